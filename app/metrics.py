"""Prometheus metrics of the API process; the work's state is read from the database at each
scrape (the database is the record of the work, whichever worker did it)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select

from app.db.models import Job, JobModel, ScoreResult
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
        JOBS.clear()
        for kind, status, count in session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        ):
            JOBS.labels(kind, status).set(count)
        MODELS.clear()
        for status, count in session.execute(select(JobModel.status, func.count()).group_by(JobModel.status)):
            MODELS.labels(status).set(count)
        FEATURE_SECONDS.clear()
        for model, seconds in session.execute(
            select(JobModel.model, func.sum(JobModel.feature_seconds)).group_by(JobModel.model)
        ):
            FEATURE_SECONDS.labels(model).set(seconds or 0.0)
        SCORE_SECONDS.clear()
        SCORE_COUNT.clear()
        for score, seconds, count in session.execute(
            select(ScoreResult.score, func.sum(ScoreResult.seconds), func.count()).group_by(ScoreResult.score)
        ):
            SCORE_SECONDS.labels(score).set(seconds or 0.0)
            SCORE_COUNT.labels(score).set(count)
    depth = queue_depth()
    QUEUE_DEPTH.set(-1 if depth is None else depth)
