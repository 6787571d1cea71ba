"""Every query the API and the workers run, in one place. Writes of results are upserts
keyed by (job, model, score), so a re-delivered task writes nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from zoorank_app.db.models import Dataset, GroundTruth, Job, JobModel, RegisteredModel, ScoreResult, utcnow

from zoorank import states
from zoorank.errors import UnknownNameError
from zoorank.zoo import ModelSpec, get_model_spec, list_models

TERMINAL = states.TERMINAL


def new_id() -> str:
    return uuid.uuid4().hex


def _upsert(session: Session, table: Any, values: dict[str, Any], keys: Sequence[str]) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(**values)
    changes = {k: statement.excluded[k] for k in values if k not in keys and k != "id"}
    session.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=changes))


# -- jobs ---------------------------------------------------------------------------------


def create_job(
    session: Session,
    *,
    dataset: str,
    fingerprint: str,
    version: str | None,
    models: list[str],
    scores: list[str],
    options: dict[str, Any],
    images_per_model: int,
    kind: str = "ranking",
    confirm: dict[str, Any] | None = None,
) -> tuple[Job, list[JobModel]]:
    """A queued job and its models' rows, flushed (ids and defaults filled in)."""
    job = Job(
        id=new_id(),
        kind=kind,
        status="queued",
        dataset=dataset,
        dataset_fingerprint=fingerprint,
        dataset_version=version,
        models=models,
        scores=scores,
        options=options,
        confirm=confirm,
    )
    session.add(job)
    session.flush()
    rows = [JobModel(job_id=job.id, model=model, images_total=images_per_model) for model in models]
    session.add_all(rows)
    session.flush()
    return job, rows


SHORT_ID = 8  # the pages show ids this long; a unique prefix of at least this many finds its job


def get_job(session: Session, job_id: str) -> Job | None:
    """The job with this id, or with this unique prefix of at least :data:`SHORT_ID` hex
    characters (what pages and the demo print); None when there is none or several."""
    job = session.get(Job, job_id)
    if (
        job is not None
        or not SHORT_ID <= len(job_id) < 32
        or not all(c in "0123456789abcdef" for c in job_id)
    ):
        return job
    matches = list(session.scalars(select(Job).where(Job.id.startswith(job_id, autoescape=True)).limit(2)))
    return matches[0] if len(matches) == 1 else None


def list_jobs(
    session: Session, *, offset: int, limit: int, status: str | None = None
) -> tuple[list[Job], int]:
    query = select(Job)
    count_query = select(func.count()).select_from(Job)
    if status:
        query = query.where(Job.status == status)
        count_query = count_query.where(Job.status == status)
    rows = session.scalars(query.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit))
    return list(rows), int(session.scalar(count_query) or 0)


def job_models(session: Session, job_id: str) -> list[JobModel]:
    return list(session.scalars(select(JobModel).where(JobModel.job_id == job_id).order_by(JobModel.id)))


def job_results(session: Session, job_id: str) -> list[ScoreResult]:
    query = select(ScoreResult).where(ScoreResult.job_id == job_id)
    return list(session.scalars(query.order_by(ScoreResult.model, ScoreResult.score)))


def set_task_ids(session: Session, job_id: str, task_ids: list[str]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(task_ids=task_ids))


def cancel_job(session: Session, job: Job) -> bool:
    """Cancel a job that has not finished; returns False when it already had."""
    if job.status in TERMINAL:
        return False
    job.status = "cancelled"
    job.finished_at = utcnow()
    session.execute(
        update(JobModel)
        .where(JobModel.job_id == job.id, JobModel.status.in_(["queued", "running"]))
        .values(status="cancelled")
    )
    return True


# The runner of a model whose forward-pass stage is done and whose arrays stage is queued
# (app.celery_client's two queues): that stage takes the claim over without a new attempt.
HANDED_OVER = "handed-over"


def start_model(
    session: Session,
    job_id: str,
    model: str,
    *,
    runner: str | None = None,
    stale_after: float = 60.0,
    takeover: bool = False,
) -> int | str:
    """Claim a (job, model) for the task ``runner`` and count the attempt.

    Returns the attempt number (1 on first delivery), or why the task must do nothing:
    ``"cancelled"`` (the job was cancelled), ``"done"`` (the model already finished: a late
    duplicate), ``"running"`` (another task runs it and its heartbeat is fresh). The same task
    delivered again after its worker died (same ``runner``) takes over at once; another task
    only once the heartbeat is older than ``stale_after`` seconds. With ``takeover`` (the
    arrays stage) a model :data:`HANDED_OVER` by its forward-pass stage is claimed at once and
    the attempt is not counted again.
    """
    if job_cancelled(session, job_id):
        return "cancelled"
    row = session.scalars(
        select(JobModel).where(JobModel.job_id == job_id, JobModel.model == model).with_for_update()
    ).one()
    if row.status in TERMINAL:
        return "done"
    if takeover and row.status == "running" and row.runner == HANDED_OVER:
        row.runner = runner
        row.heartbeat_at = utcnow()
        return row.attempts
    if row.status == "running" and runner is not None and row.runner not in (None, runner):
        beat = row.heartbeat_at or row.started_at
        if beat is not None and (utcnow() - as_utc(beat)).total_seconds() < stale_after:
            return "running"
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", started_at=utcnow())
    )
    row.attempts += 1
    row.status = "running"
    row.runner = runner
    row.started_at = row.heartbeat_at = utcnow()
    return row.attempts


def as_utc(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def hand_over(
    session: Session,
    job_id: str,
    model: str,
    *,
    feature_seconds: float,
    images_per_second: float,
    from_cache: bool,
) -> None:
    """The forward-pass stage is done: the model waits for its arrays stage (still running
    for the user; :mod:`app.sweeper` treats it as queued)."""
    session.execute(
        update(JobModel)
        .where(JobModel.job_id == job_id, JobModel.model == model, JobModel.status == "running")
        .values(
            runner=HANDED_OVER,
            heartbeat_at=utcnow(),
            feature_seconds=feature_seconds,
            images_per_second=images_per_second,
            from_cache=from_cache,
        )
    )


def resume_stage(row: JobModel) -> Literal["device", "arrays"]:
    """Where a model's work starts again when its task is lost: its arrays stage once its
    forward-pass stage has handed it over (the forward pass's figures are written then, and by
    nothing else while the model runs; its model-needing scores were written with them), else
    from the forward pass."""
    return "arrays" if row.feature_seconds is not None else "device"


def failed_scores(session: Session, job_id: str, model: str) -> list[str]:
    """The model's stored scores that failed (in either stage)."""
    query = select(ScoreResult.score).where(
        ScoreResult.job_id == job_id, ScoreResult.model == model, ScoreResult.error.is_not(None)
    )
    return sorted(session.scalars(query))


def heartbeat(session: Session, job_id: str, model: str) -> None:
    session.execute(
        update(JobModel)
        .where(JobModel.job_id == job_id, JobModel.model == model, JobModel.status == "running")
        .values(heartbeat_at=utcnow())
    )


def open_jobs(session: Session) -> list[Job]:
    """Ranking jobs not yet finished, oldest first."""
    query = select(Job).where(Job.kind == "ranking", Job.status.in_(["queued", "running"]))
    return list(session.scalars(query.order_by(Job.created_at)))


def mark_resent(session: Session, row_id: int, before: datetime) -> bool:
    """Record a re-send of a model's task unless another sweeper did since ``before``;
    returns whether this caller may send it (at most one re-send per period, many APIs)."""
    result = session.execute(
        update(JobModel)
        .where(
            JobModel.id == row_id,
            (JobModel.resent_at.is_(None)) | (JobModel.resent_at < before),
        )
        .values(resent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def record_samples(session: Session, job_id: str, model: str, sample_ids: list[int]) -> None:
    """The rows the model's task scores (and, on the job's first task, the job's sample ids)."""
    job = session.get(Job, job_id)
    if job is not None and job.sample_ids is None:
        job.sample_ids = sample_ids
    session.execute(
        update(JobModel)
        .where(JobModel.job_id == job_id, JobModel.model == model)
        .values(images_total=len(sample_ids))
    )


def start_job(session: Session, job_id: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(status="running", started_at=utcnow())
    )


def set_model_status(
    session: Session, job_id: str, model: str, status: str, *, images_done: int | None = None
) -> None:
    """Set a model's status (and ``images_done``: a validation counts its steps there)."""
    values: dict[str, Any] = {"status": status}
    if images_done is not None:
        values["images_done"] = images_done
    if status == "running":
        values["started_at"] = func.coalesce(JobModel.started_at, utcnow())
    session.execute(
        update(JobModel).where(JobModel.job_id == job_id, JobModel.model == model).values(**values)
    )


def model_progress(session: Session, job_id: str, model: str, images_done: int) -> bool:
    """Record progress; returns whether the job has been cancelled (the task then stops)."""
    session.execute(
        update(JobModel)
        .where(JobModel.job_id == job_id, JobModel.model == model, JobModel.status == "running")
        .values(images_done=images_done)
    )
    return job_cancelled(session, job_id)


def job_cancelled(session: Session, job_id: str) -> bool:
    """Whether the job is cancelled, reading its row under a lock (``FOR UPDATE`` where the
    database has it) so that a cancel cannot commit between this check and the writes that
    follow in the same transaction. A job deleted meanwhile counts as cancelled: its task writes
    nothing."""
    status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
    return status in (None, "cancelled")


def finish_model(
    session: Session,
    job_id: str,
    model: str,
    *,
    status: str,
    error: str | None = None,
    feature_seconds: float | None = None,
    images_per_second: float | None = None,
    from_cache: bool | None = None,
    features_recomputed: bool | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow()}
    if features_recomputed is not None:
        values["features_recomputed"] = features_recomputed
    if feature_seconds is not None:
        values |= {
            "feature_seconds": feature_seconds,
            "images_per_second": images_per_second,
            "from_cache": from_cache,
        }
    if status == "succeeded":
        values["images_done"] = JobModel.images_total
    # A cancelled model stays cancelled, whatever its task was doing when the cancel came.
    session.execute(
        update(JobModel)
        .where(JobModel.job_id == job_id, JobModel.model == model, JobModel.status != "cancelled")
        .values(**values)
    )


def upsert_score_result(session: Session, **values: Any) -> None:
    _upsert(session, ScoreResult, values, ("job_id", "model", "score"))


def set_pool_value(session: Session, job_id: str, model: str, score: str, value: float) -> None:
    session.execute(
        update(ScoreResult)
        .where(ScoreResult.job_id == job_id, ScoreResult.model == model, ScoreResult.score == score)
        .values(pool_value=value)
    )


def close_job(
    session: Session, job: Job, *, status: str, ranking: dict[str, Any] | None, error: str | None
) -> None:
    job.status = status
    job.ranking = ranking
    job.error = error
    job.finished_at = utcnow()


# -- leaderboard --------------------------------------------------------------------------


LEADERBOARD_STATUSES = ("succeeded", "partial")


def leaderboard_rows(session: Session, *, dataset: str) -> list[tuple[ScoreResult, Job]]:
    """Every successful score value on ``dataset`` from finished jobs (succeeded or partial;
    cancelled and failed jobs are left out), oldest first, with its job."""
    query = (
        select(ScoreResult, Job)
        .join(Job, Job.id == ScoreResult.job_id)
        .where(
            ScoreResult.dataset == dataset,
            ScoreResult.value.is_not(None),
            Job.status.in_(LEADERBOARD_STATUSES),
        )
        .order_by(ScoreResult.created_at, ScoreResult.id)
    )
    return [(row, job) for row, job in session.execute(query)]


def known_datasets(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(ScoreResult.dataset).distinct())))


def ground_truth(session: Session, *, dataset: str | None) -> dict[tuple[str, str], GroundTruth]:
    query = select(GroundTruth)
    if dataset:
        query = query.where(GroundTruth.dataset == dataset)
    latest: dict[tuple[str, str], GroundTruth] = {}
    for row in session.scalars(query.order_by(GroundTruth.created_at, GroundTruth.id)):
        latest[(row.dataset_fingerprint, row.model)] = row
    return latest


def upsert_ground_truth(session: Session, **values: Any) -> None:
    _upsert(session, GroundTruth, values, ("job_id", "model"))


# -- models and datasets ------------------------------------------------------------------


def registered_models(session: Session) -> list[RegisteredModel]:
    return list(session.scalars(select(RegisteredModel).order_by(RegisteredModel.name)))


def add_model(session: Session, spec: ModelSpec, description: str) -> RegisteredModel:
    row = RegisteredModel(
        name=spec.name,
        architecture=spec.architecture,
        weights=spec.weights,
        imagenet_top1=spec.imagenet_top1,
        description=description,
    )
    session.add(row)
    session.flush()
    return row


def resolve_model(session: Session, name: str) -> ModelSpec:
    """A model registered in the database, else the built-in zoo / ``ARCH@SOURCE``."""
    row = session.get(RegisteredModel, name)
    if row is not None:
        return ModelSpec(row.name, row.architecture, row.weights, row.imagenet_top1, row.description)
    if name in list_models() or "@" in name:
        return get_model_spec(name)
    registered = ", ".join(r.name for r in registered_models(session)) or "none"
    raise UnknownNameError(
        f"unknown model {name!r}; the built-in zoo: {', '.join(list_models())}; registered with "
        f"this service (POST /v1/models): {registered}; or write ARCH@SOURCE "
        "(SOURCE: offline, random, timm, timm:HUB_ID, file:PATH)",
        field="models",
    )


def resolve_models(session: Session, names: Iterable[str]) -> list[ModelSpec]:
    return [resolve_model(session, name) for name in names]


def add_dataset(session: Session, row: Dataset) -> Dataset:
    session.add(row)
    session.flush()
    return row


def list_uploaded(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc())))


def dataset_by_fingerprint(session: Session, fingerprint: str) -> Dataset | None:
    """The uploaded dataset with this content, if one is stored (uploads are deduplicated)."""
    return session.scalars(select(Dataset).where(Dataset.fingerprint == fingerprint).limit(1)).first()


@dataclass
class WorkTotals:
    """What ``/metrics`` reports of the work, read in one session."""

    jobs: dict[tuple[str, str], int]  # (kind, status) -> jobs
    models: dict[str, int]  # status -> (job, model) rows
    feature_seconds: dict[str, float]  # model -> seconds of forward passes
    scores: dict[str, tuple[float, int]]  # score -> (seconds, results stored)
    features_recomputed: int  # (job, model) rows whose cpu stage made the forward pass again


def work_totals(session: Session) -> WorkTotals:
    jobs = select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    models = select(JobModel.status, func.count()).group_by(JobModel.status)
    seconds = select(JobModel.model, func.sum(JobModel.feature_seconds)).group_by(JobModel.model)
    scores = select(ScoreResult.score, func.sum(ScoreResult.seconds), func.count()).group_by(
        ScoreResult.score
    )
    recomputed = select(func.count()).where(JobModel.features_recomputed.is_(True))
    return WorkTotals(
        jobs={(kind, status): count for kind, status, count in session.execute(jobs)},
        models={status: count for status, count in session.execute(models)},
        feature_seconds={model: float(s or 0.0) for model, s in session.execute(seconds)},
        scores={score: (float(s or 0.0), count) for score, s, count in session.execute(scores)},
        features_recomputed=session.scalar(recomputed) or 0,
    )
