"""What a ranking task does: run one model of a job (with its heartbeat), then finalise the job.

The Celery tasks in ``workers.tasks`` call :func:`run_model` and :func:`finalise_job`; keeping
them here (not in the task bodies) lets tests run them directly and keeps the tasks thin."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from zoorank_app.db import crud
from zoorank_app.db.session import DATABASE_DOWN, session_scope
from zoorank_app.logs import log_context
from zoorank_app.services.jobs import stored_identity
from zoorank_app.settings import Settings

from zoorank.data import DatasetIdentity
from zoorank.errors import Cancelled
from zoorank.features.cache import FeatureCache
from zoorank.rank import (
    ModelResult,
    RankOptions,
    ScoreRecord,
    Stage,
    prepare_dataset,
    score_model,
    summarise,
)
from zoorank.zoo import ModelSpec

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def run_model(
    settings: Settings, job_id: str, model: str, task_id: str | None = None, stage: Stage = "all"
) -> dict[str, Any]:
    """Compute every score of one (job, model) and upsert the results. Never raises for a
    model's own failure: it records it, so the chord's callback always runs.

    ``stage`` (:func:`zoorank.rank.score_model`): the service runs ``"device"`` on the ``gpu``
    queue (forward passes into the shared cache, the model-needing scores; then the model is
    handed over) and ``"arrays"`` on the ``cpu`` queue (the other scores; then it is closed).

    ``task_id`` is the Celery task running it: a second task for the same model (a re-send by
    :mod:`app.sweeper`, or a late duplicate) does nothing while this one's heartbeat is fresh.
    """
    # A little before Celery's soft limit (which interrupts code stuck in one call), so that the
    # task normally stops here, between batches or scores, with a clear reason.
    limit = settings.task_soft_time_limit
    deadline = time.monotonic() + limit - min(5.0, 0.1 * limit)
    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id)
        if job is None:
            return {"model": model, "status": "missing"}
        if job.status == "cancelled":
            return {"model": model, "status": "cancelled"}
        dataset, scores, options = job.dataset, list(job.scores), RankOptions.from_dict(job.options)
        expect = stored_identity(job)
        if options.device == "auto":
            options.device = settings.device  # ZOORANK_DEVICE: the worker's device unless the job says
        spec = crud.resolve_model(session, model)
        # Counted before any work, so that a task killed while it loads the dataset (or the
        # model) is an attempt too and cannot come back forever.
        claim = crud.start_model(
            session,
            job_id,
            model,
            runner=task_id,
            stale_after=settings.stale_after,
            takeover=stage == "arrays",
        )
    if claim == "cancelled":
        return {"model": model, "status": "cancelled"}
    if isinstance(claim, str):
        return {"model": model, "status": "skipped", "reason": claim}
    if claim > MAX_ATTEMPTS:
        return _fail(settings, job_id, model, f"gave up after {MAX_ATTEMPTS} attempts (worker lost)")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.stale_after / 4):
            try:
                with session_scope(settings.database_url) as session:
                    crud.heartbeat(session, job_id, model)
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("heartbeat of %s in job %s failed: %s", model, job_id, exc)

    threading.Thread(target=beat, name=f"heartbeat-{model}", daemon=True).start()
    try:
        with log_context(job_id=job_id, model=model):
            log.info("model started (%s stage, attempt %d)", stage, claim)
            outcome = _run_claimed(
                settings, job_id, model, dataset, expect, scores, options, spec, deadline, stage
            )
            log.info("model %s", outcome.get("status"))
            return outcome
    finally:
        stop.set()


def _unknown_while_database_down(what: str, job_id: str, model: str, exc: Exception) -> bool:
    """A progress write or cancel check that could not reach the database: the work goes on
    (the database is not a part of the model's computation). The results are written only
    after one more cancel check, and a database still down then makes the task retry."""
    log.warning(
        "%s of %s in job %s skipped: database unreachable (%s)", what, model, job_id, type(exc).__name__
    )
    return False


def _run_claimed(
    settings: Settings,
    job_id: str,
    model: str,
    dataset: str,
    expect: DatasetIdentity | None,
    scores: list[str],
    options: RankOptions,
    spec: ModelSpec,
    deadline: float,
    stage: Stage,
) -> dict[str, Any]:
    time_limit_reason = (
        f"stopped after the task time limit of {settings.task_soft_time_limit} s "
        "(ZOORANK_TASK_SOFT_TIME_LIMIT); the model's other work was not finished"
    )
    try:
        prepared = prepare_dataset(
            dataset, options, data_roots=settings.data_roots, upload_dir=settings.upload_dir, expect=expect
        )
    except Exception as exc:
        return _fail(settings, job_id, model, f"dataset: {exc}")
    sample_ids = [int(i) for i in prepared.rows]
    with session_scope(settings.database_url) as session:
        crud.record_samples(session, job_id, model, sample_ids)

    done = 0
    last_write = 0.0

    def progress(images: int) -> None:
        """After each batch: progress written (at most every 0.5 s); a cancelled job or a task
        past its time limit stops the pass there."""
        nonlocal done, last_write
        done += images
        if time.monotonic() > deadline:
            raise Cancelled("time limit")
        if time.monotonic() - last_write > 0.5:
            last_write = time.monotonic()
            try:
                with session_scope(settings.database_url) as session:
                    cancelled = crud.model_progress(session, job_id, model, done)
            except DATABASE_DOWN as exc:
                cancelled = _unknown_while_database_down("progress", job_id, model, exc)
            if cancelled:
                raise Cancelled(f"job {job_id} cancelled")

    def should_stop() -> bool:
        if time.monotonic() > deadline:
            return True
        try:
            with session_scope(settings.database_url) as session:
                return crud.job_cancelled(session, job_id)
        except DATABASE_DOWN as exc:
            return _unknown_while_database_down("cancel check", job_id, model, exc)

    try:
        result = score_model(
            prepared,
            spec,
            scores,
            options,
            cache=FeatureCache.from_settings(settings),
            progress=progress,
            should_stop=should_stop,
            stage=stage,
        )
    except Cancelled:
        if time.monotonic() > deadline:
            return _fail(settings, job_id, model, time_limit_reason)
        log.info("model %s of job %s stopped: the job was cancelled", model, job_id)
        return {"model": model, "status": "cancelled"}
    except Exception as exc:  # score_model records its own errors; this is the last guard
        log.exception("model %s failed in job %s", model, job_id)
        return _fail(settings, job_id, model, f"{type(exc).__name__}: {exc}")
    if result.error is not None:
        return _fail(settings, job_id, model, result.error)
    with session_scope(settings.database_url) as session:
        if crud.job_cancelled(session, job_id):  # cancelled after the last check: write nothing
            return {"model": model, "status": "cancelled"}
        for record in result.scores.values():
            crud.upsert_score_result(
                session,
                **_result_row(
                    job_id,
                    dataset,
                    prepared.dataset.fingerprint,
                    result,
                    record,
                    options.seed,
                    sample_ids,
                ),
            )
        if stage == "device":
            crud.hand_over(
                session,
                job_id,
                model,
                feature_seconds=result.feature_seconds,
                images_per_second=result.images_per_second,
                from_cache=result.from_cache,
            )
            return {"model": model, "status": "extracted", "from_cache": result.from_cache}
        session.flush()
        failed = crud.failed_scores(session, job_id, model)
        forward = stage == "all"  # else the forward-pass stage recorded its own figures
        crud.finish_model(
            session,
            job_id,
            model,
            status="succeeded",
            error=f"scores failed: {', '.join(failed)}" if failed else None,
            feature_seconds=result.feature_seconds if forward else None,
            images_per_second=result.images_per_second if forward else None,
            from_cache=result.from_cache if forward else None,
            features_recomputed=not result.from_cache if stage == "arrays" else None,
        )
    return {"model": model, "status": "succeeded", "from_cache": result.from_cache}


def _result_row(
    job_id: str,
    dataset: str,
    fingerprint: str,
    result: ModelResult,
    record: ScoreRecord,
    seed: int,
    sample_ids: list[int],
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "model": result.model,
        "score": record.score,
        "dataset": dataset,
        "dataset_fingerprint": fingerprint,
        "value": record.value,
        "direction": record.direction,
        "params": record.params,
        "details": record.details,
        "seed": seed,
        "sample_ids": sample_ids,
        "versions": result.versions,
        "seconds": record.seconds,
        "error": record.error,
    }


def _fail(settings: Settings, job_id: str, model: str, error: str) -> dict[str, Any]:
    with session_scope(settings.database_url) as session:
        crud.finish_model(session, job_id, model, status="failed", error=error)
    return {"model": model, "status": "failed", "error": error}


def finalise_job(settings: Settings, job_id: str) -> str:
    """Ranks per score + aggregate from the stored results; closes the job; returns status."""
    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id)
        if job is None:
            return "missing"
        if job.status == "cancelled":
            return "cancelled"
        rows = crud.job_results(session, job_id)
        models = crud.job_models(session, job_id)
        results = _results_from_rows(job.models, rows, models)
        ranking, pool = summarise(results, job.scores)
        for score, per_model in pool.items():
            for model, value in per_model.items():
                crud.set_pool_value(session, job_id, model, score, value)
        failed = [m for m in models if m.status != "succeeded"]
        # a model that ran but some of whose scores failed (``scores failed: ...``)
        incomplete = [m for m in models if m.status == "succeeded" and m.error]
        if len(failed) == len(models):
            status = "failed"
        elif failed or incomplete:
            status = "partial"
        else:
            status = "succeeded"
        error = "; ".join(f"{m.model}: {m.error or m.status}" for m in [*failed, *incomplete]) or None
        crud.close_job(
            session,
            job,
            status=status,
            ranking=ranking if status != "failed" else None,
            error=error,
        )
        return status


def _results_from_rows(model_names: list[str], rows: list[Any], models: list[Any]) -> list[ModelResult]:
    """The job's results; a model that did not succeed comes with its error (it is ranked last,
    with the reason)."""
    status = {m.model: m for m in models}
    by_model: dict[str, dict[str, ScoreRecord]] = {
        name: {} for name in model_names if name in status and status[name].status == "succeeded"
    }
    for row in rows:
        if row.model in by_model:
            by_model[row.model][row.score] = ScoreRecord(
                row.score, row.value, row.direction, row.params, row.details, row.seconds, row.error
            )
    failed = [
        ModelResult(model=name, scores={}, error=status[name].error or status[name].status)
        for name in model_names
        if name in status and status[name].status != "succeeded"
    ]
    return [ModelResult(model=name, scores=scores) for name, scores in by_model.items()] + failed
