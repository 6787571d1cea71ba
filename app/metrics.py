"""Prometheus metrics of the API process; the work's state is read from the database at each
scrape (the database is the record of the work, whichever worker did it)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from app.db import crud
from app.db.session import session_scope

JOBS_SUBMITTED = Counter("zoorank_jobs_submitted_total", "Ranking jobs accepted")
REQUESTS = Counter("zoorank_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("zoorank_http_request_seconds", "HTTP request latency", ["method", "route"])
SWEEPER_RESENT = Counter("zoorank_sweeper_resent_total", "Model tasks sent again by the sweeper", ["reason"])
SWEEPER_CLOSED = Counter("zoorank_sweeper_closed_jobs_total", "Jobs closed by the sweeper")
JOBS = Gauge("zoorank_jobs", "Jobs by kind and status", ["kind", "status"])
MODELS = Gauge("zoorank_job_models", "(job, model) tasks by status (failed: failures)", ["status"])
FEATURE_SECONDS = Gauge("zoorank_model_feature_seconds_sum", "Seconds of forward passes, by model", ["model"])
SCORE_SECONDS = Gauge("zoorank_score_seconds_sum", "Seconds computing scores, by score", ["score"])
SCORE_COUNT = Gauge("zoorank_score_results", "Score results stored, by score", ["score"])
QUEUE_DEPTH = Gauge("zoorank_queue_depth", "Messages waiting in the broker's queue (-1: unknown)")


def refresh(database_url: str, queue_depth: Callable[[], int | None]) -> None:
    """Set the gauges from the database and the broker."""
    with session_scope(database_url) as session:
        totals = crud.work_totals(session)
    for gauge in (JOBS, MODELS, FEATURE_SECONDS, SCORE_SECONDS, SCORE_COUNT):
        gauge.clear()
    for (kind, status), count in totals.jobs.items():
        JOBS.labels(kind, status).set(count)
    for status, count in totals.models.items():
        MODELS.labels(status).set(count)
    for model, seconds in totals.feature_seconds.items():
        FEATURE_SECONDS.labels(model).set(seconds)
    for score, (seconds, count) in totals.scores.items():
        SCORE_SECONDS.labels(score).set(seconds)
        SCORE_COUNT.labels(score).set(count)
    depth = queue_depth()
    QUEUE_DEPTH.set(-1 if depth is None else depth)
