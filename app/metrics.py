"""Prometheus metrics of the API process; the work's state is read from the database at each
scrape (the database is the record of the work, whichever worker did it)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from zoorank_app.db import crud
from zoorank_app.db.session import session_scope
from zoorank_app.settings import Settings

from zoorank.features.cache import FeatureCache

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
GC_PAUSE = Histogram(
    "zoorank_gc_pause_seconds",
    "Garbage-collector passes in this process (every request waits for them), by generation",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
RECOMPUTED = Gauge(
    "zoorank_features_recomputed",
    "(job, model) tasks whose cpu stage found the features gone from the cache and made the "
    "forward pass again",
)
CACHE_BYTES = Gauge("zoorank_feature_cache_bytes", "Bytes in the feature cache this API process sees")
CACHE_ENTRIES = Gauge("zoorank_feature_cache_entries", "Feature sets in the feature cache")
CACHE_LIMIT = Gauge("zoorank_feature_cache_limit_bytes", "ZOORANK_CACHE_MAX_MB in bytes (0: no bound)")
QUEUE_DEPTH = Gauge("zoorank_queue_depth", "Messages waiting in the broker's queue (-1: unknown)")


_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started)


def watch_gc() -> None:
    """Time every garbage-collector pass of this process into ``GC_PAUSE`` (once per process)."""
    if _time_gc not in gc.callbacks:
        gc.callbacks.append(_time_gc)


def refresh(settings: Settings, queue_depth: Callable[[], int | None]) -> None:
    """Set the gauges from the database, the feature cache (the folder the workers share) and
    the broker."""
    with session_scope(settings.database_url) as session:
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
    RECOMPUTED.set(totals.features_recomputed)
    cache = FeatureCache.from_settings(settings).stats()
    CACHE_BYTES.set(cache["bytes"])
    CACHE_ENTRIES.set(cache["entries"])
    CACHE_LIMIT.set(cache["limit_bytes"])
    depth = queue_depth()
    QUEUE_DEPTH.set(-1 if depth is None else depth)


class RequestMetrics:
    """ASGI middleware counting every HTTP request by route and status and timing it.

    Plain ASGI, not Starlette's ``BaseHTTPMiddleware``: that one runs each request's app in a
    task group and streams its body through a memory channel, a few hundred microseconds per
    request that the API's most frequent request (a job poll) does not need. The route is the
    template FastAPI put in the scope (``/v1/jobs/{job_id}``), so labels stay few."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers when the app raises before it starts a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)
