"""Prometheus metrics of the API process."""

from prometheus_client import Counter, Histogram

JOBS_SUBMITTED = Counter("zoorank_jobs_submitted_total", "Ranking jobs accepted")
REQUESTS = Counter("zoorank_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("zoorank_http_request_seconds", "HTTP request latency", ["method", "route"])
