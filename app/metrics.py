"""Prometheus metrics of the API: HTTP traffic and garbage-collector passes counted in each
process, and the work's state read from the database at each scrape (the database is the
record of the work, whichever worker did it).

With several API processes (``zoorank serve --workers N``), ``PROMETHEUS_MULTIPROC_DIR`` names a
folder where each process writes its counters (prometheus_client's multiprocess mode), and
whichever process answers ``/metrics`` sums them all (:func:`exposition`)."""

from __future__ import annotations

import gc
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
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
GC_PAUSE = Histogram(
    "zoorank_gc_pause_seconds",
    "Garbage-collector passes in this process (every request waits for them), by generation",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
API_PROCESSES = Gauge(
    "zoorank_api_processes",
    "API processes serving (zoorank serve --workers)",
    multiprocess_mode="livesum",  # each live process adds its 1; a dead one's file is removed
)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when first imported

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


class WorkState:
    """The work's state as the last scrape read it (database, feature cache, broker): the same
    for every API process, so a collector of its own, never in the per-process files."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


WORK_STATE = WorkState()
REGISTRY.register(WORK_STATE)


def _gauge(name: str, documentation: str, values: dict[tuple[str, ...], float], labels: list[str]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def refresh(settings: Settings, queue_depth: Callable[[], int | None]) -> None:
    """Read the work's state from the database, the feature cache (the folder the workers
    share) and the broker into :data:`WORK_STATE`."""
    with session_scope(settings.database_url) as session:
        totals = crud.work_totals(session)
    cache = FeatureCache.from_settings(settings).stats()
    depth = queue_depth()
    scores = totals.scores.items()
    WORK_STATE.families = [
        _gauge("zoorank_jobs", "Jobs by kind and status", dict(totals.jobs), ["kind", "status"]),
        _gauge(
            "zoorank_job_models",
            "(job, model) tasks by status (failed: failures)",
            {(status,): count for status, count in totals.models.items()},
            ["status"],
        ),
        _gauge(
            "zoorank_model_feature_seconds_sum",
            "Seconds of forward passes, by model",
            {(model,): seconds for model, seconds in totals.feature_seconds.items()},
            ["model"],
        ),
        _gauge(
            "zoorank_score_seconds_sum",
            "Seconds computing scores, by score",
            {(score,): seconds for score, (seconds, _) in scores},
            ["score"],
        ),
        _gauge(
            "zoorank_score_results",
            "Score results stored, by score",
            {(s,): n for s, (_, n) in scores},
            ["score"],
        ),
        _gauge(
            "zoorank_features_recomputed",
            "(job, model) tasks whose cpu stage found the features gone from the cache and made the "
            "forward pass again",
            {(): totals.features_recomputed},
            [],
        ),
        _gauge(
            "zoorank_feature_cache_bytes",
            "Bytes in the feature cache this API process sees",
            {(): cache["bytes"]},
            [],
        ),
        _gauge(
            "zoorank_feature_cache_entries", "Feature sets in the feature cache", {(): cache["entries"]}, []
        ),
        _gauge(
            "zoorank_feature_cache_limit_bytes",
            "ZOORANK_CACHE_MAX_MB in bytes (0: no bound)",
            {(): cache["limit_bytes"]},
            [],
        ),
        _gauge(
            "zoorank_queue_depth",
            "Messages waiting in the broker's queue (-1: unknown)",
            {(): -1 if depth is None else depth},
            [],
        ),
    ]


def exposition() -> bytes:
    """The Prometheus text: this process's metrics, or, in multiprocess mode, every API
    process's counters and histograms summed (the dead ones' included, as counters must), with
    the work's state beside them."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry, path=folder)
    registry.register(WORK_STATE)
    return generate_latest(registry)


def start_multiprocess(folder: Path) -> None:
    """Multiprocess mode for the API processes started after this call (they inherit the
    environment): ``folder`` emptied first, so that counts start at 0 with each server."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)


def mark_process_dead(pid: int) -> None:
    """An API process ended: its live gauges (:data:`API_PROCESSES`) leave the sums; its
    counters stay."""
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        prometheus_multiprocess.mark_process_dead(pid, folder)


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
