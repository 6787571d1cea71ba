"""Validation jobs (ground truth): submit one, and what its task does."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from zoorank_app.db import crud
from zoorank_app.db.session import session_scope
from zoorank_app.services.jobs import Created, job_models, stored_identity
from zoorank_app.settings import Settings

from zoorank.features.cache import FeatureCache
from zoorank.rank import (
    RankOptions,
    prepare_dataset,
    resolve_scores,
)

log = logging.getLogger(__name__)


def submit_validation(
    settings: Settings,
    *,
    dataset: str,
    models: Sequence[str] | None,
    scores: Sequence[str] | None,
    mode: str,
    loss: str,
    alpha: float,
    seeds: Sequence[int],
    train_settings: dict[str, Any] | None,
    dispatch: Callable[[str], list[str]],
) -> Created:
    """Validate a ground-truth request, create a ``validation`` job, queue its task."""
    from zoorank.groundtruth.training import TrainSettings, check_request

    seeds = check_request(mode, loss, alpha, seeds)
    parsed = TrainSettings.from_dict(train_settings)
    score_names = resolve_scores(scores) if scores != [] else []
    with session_scope(settings.database_url) as session:
        specs = job_models(settings, session, models)
        prepared = prepare_dataset(
            dataset,
            RankOptions(samples_per_class=0),
            data_roots=settings.data_roots,
            upload_dir=settings.upload_dir,
        )
        parsed.split(prepared.dataset.labels)
        options = {
            "mode": mode,
            "loss": loss,
            "alpha": alpha,
            "seeds": list(seeds),
            "settings": parsed.to_dict(),
        }
        job, rows = crud.create_job(
            session,
            dataset=dataset,
            fingerprint=prepared.dataset.fingerprint,
            version=prepared.dataset.identity.version,
            models=list(dict.fromkeys(s.name for s in specs)),  # a model named twice runs once
            scores=score_names,
            options=options,
            images_per_model=len(validation_steps(score_names)),
            kind="validation",
        )
    task_ids = dispatch(job.id)
    with session_scope(settings.database_url) as session:
        crud.set_task_ids(session, job.id, task_ids)
    return Created(job, rows)


def validation_steps(scores: Sequence[str]) -> tuple[str, ...]:
    """What a validation does with each model, in order: a model row's ``images_total`` counts
    them, ``images_done`` those done."""
    return ("score", "train") if scores else ("train",)


def run_validation(settings: Settings, job_id: str) -> str:
    """Train every model of a validation job, store ground truth and the score agreement. Each
    model's row follows its steps: running while scored, queued (1 step done) until its turn to
    train, running while trained, then finished with its outcome (not when the whole job ends)."""
    from zoorank.groundtruth import validate

    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id)
        if job is None or job.status == "cancelled":
            return "cancelled" if job else "missing"
        crud.start_job(session, job_id)
        dataset, models, scores, options = job.dataset, list(job.models), list(job.scores), dict(job.options)
        expect = stored_identity(job)
        train_settings = dict(options["settings"])
        if train_settings.get("device", "auto") == "auto":
            train_settings["device"] = settings.device  # ZOORANK_DEVICE, as for ranking jobs

    steps = validation_steps(scores)
    last: dict[str, str] = {}

    def on_model(stage: str, model: str, index: int, total: int) -> None:
        with session_scope(settings.database_url) as session:
            if last.get("stage") == "score" and last["model"] != model:  # scored; waits to train
                crud.set_model_status(session, job_id, last["model"], "queued", images_done=1)
            crud.set_model_status(session, job_id, model, "running", images_done=steps.index(stage))
        last.update(stage=stage, model=model)

    def on_truth(truth: Any) -> None:
        with session_scope(settings.database_url) as session:
            _finish_model(session, job_id, truth)

    try:
        result = validate(
            dataset,
            models,
            mode=options["mode"],
            loss=options["loss"],
            alpha=options["alpha"],
            seeds=options["seeds"],
            scores=scores,
            settings=train_settings,
            cache=FeatureCache.from_settings(settings),
            data_roots=settings.data_roots,
            upload_dir=settings.upload_dir,
            expect=expect,
            on_model=on_model,
            on_truth=on_truth,
        )
    except Exception as exc:
        log.exception("validation job %s failed", job_id)
        with session_scope(settings.database_url) as session:
            job = crud.get_job(session, job_id)
            assert job is not None
            crud.close_job(session, job, status="failed", ranking=None, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    summary = result.to_dict()
    with session_scope(settings.database_url) as session:
        for truth in result.ground_truth:
            if truth.accuracy is not None:
                crud.upsert_ground_truth(
                    session,
                    job_id=job_id,
                    model=truth.model,
                    dataset=dataset,
                    dataset_fingerprint=result.dataset_fingerprint,
                    mode=result.mode,
                    loss=result.loss,
                    alpha=result.alpha,
                    accuracy=truth.accuracy,
                    accuracy_std=truth.accuracy_std,
                    seeds=result.seeds,
                    details={"runs": _jsonable_runs(truth.runs)},
                )
            _finish_model(session, job_id, truth)
        failed = [g for g in result.ground_truth if g.error is not None]
        status = "failed" if len(failed) == len(result.ground_truth) else "partial" if failed else "succeeded"
        job = crud.get_job(session, job_id)
        assert job is not None
        crud.close_job(
            session,
            job,
            status=status,
            ranking=summary,
            error="; ".join(f"{g.model}: {g.error}" for g in failed) or None,
        )
    return status


def _finish_model(session: Any, job_id: str, truth: Any) -> None:
    """A model's row closed with the outcome of its ground truth."""
    status = "succeeded" if truth.error is None else "failed"
    crud.finish_model(session, job_id, truth.model, status=status, error=truth.error)


def _jsonable_runs(runs: Sequence[Any]) -> list[Any]:
    from dataclasses import asdict

    from zoorank.rank import jsonable

    return [jsonable(asdict(run)) for run in runs]
