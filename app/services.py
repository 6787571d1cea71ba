"""What a job does, as functions over (settings, ids): submit, run one model, finalise.

The API calls :func:`submit_ranking`; the Celery tasks in ``workers.tasks`` call
:func:`run_model` and :func:`finalise_job`. Keeping them here (not in the task bodies) lets
tests run them directly and keeps the tasks thin.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from zoorank_app import archives
from zoorank_app.db import crud
from zoorank_app.db.models import Dataset, Job, JobModel
from zoorank_app.db.session import DATABASE_DOWN, session_scope
from zoorank_app.logs import log_context
from zoorank_app.settings import Settings

from zoorank.data import DatasetIdentity, load_dataset
from zoorank.data.datasets import check_ref
from zoorank.data.refs import resolve_under_roots
from zoorank.data.subsample import check_class_counts
from zoorank.errors import Cancelled, ConflictError, InvalidInputError, TooLargeError
from zoorank.features.cache import FeatureCache
from zoorank.policy import DEFAULT_RANKING, job_policy
from zoorank.rank import (
    VALUE_OPTIONS,
    ModelResult,
    RankOptions,
    ScoreRecord,
    Stage,
    check_weight_files,
    comparability_key,
    prepare_dataset,
    resolve_scores,
    score_model,
    summarise,
)
from zoorank.scores import get_score
from zoorank.zoo import ModelSpec

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3

Dispatch = Callable[[str, list[str]], list[str]]


@dataclass(frozen=True)
class Created:
    """A job as it was accepted: its row and its models' rows, as committed and queued."""

    job: Job
    models: list[JobModel]

    @property
    def id(self) -> str:
        return self.job.id


def submit_ranking(
    settings: Settings,
    *,
    dataset: str,
    models: Sequence[str] | None,
    scores: Sequence[str] | None,
    options: dict[str, Any] | None,
    dispatch: Dispatch,
    confirm: dict[str, Any] | None = None,
) -> Created:
    """Check the request, create the job, queue one task per model.

    Every check that can fail on user input runs before anything is queued, and each is
    cheap: names, options, and the dataset's class counts from its cached index
    (:mod:`zoorank.data.identity`; no image is read). What only reading the images can find (an
    image that does not decode) fails the model in its task, with the reason, and the job
    ends ``failed`` or ``partial``. Two transactions: the job and its models, then the task ids.

    ``confirm``: a confirmation (:class:`~zoorank.confirm.request.ConfirmRequest`) to start
    when the ranking has finished; checked here as far as the ranking is not needed (a budget
    in images against its minimum, the classes against the validation split).
    """
    from zoorank.confirm.plan import plan_confirmation
    from zoorank.confirm.request import ConfirmRequest

    parsed_options = RankOptions.from_dict(options)
    confirm_request = ConfirmRequest.from_dict(confirm) if confirm is not None else None
    score_names = resolve_scores(scores)
    with session_scope(settings.database_url) as session:
        specs = job_models(settings, session, models)
        prepared = prepare_dataset(
            dataset, parsed_options, data_roots=settings.data_roots, upload_dir=settings.upload_dir
        )
        largest_class = int(np.bincount(prepared.dataset.labels).max()) if len(prepared.dataset.labels) else 0
        if parsed_options.samples_per_class >= largest_class:
            parsed_options.samples_per_class = 0  # what was used: every image (recorded as such)
        if confirm_request is not None and confirm_request.budget_unit == "images":
            # every model's epoch costs the same in images: any order gives the plan's checks
            plan_confirmation([spec.name for spec in specs], prepared.dataset.labels, confirm_request)
        job, rows = crud.create_job(
            session,
            dataset=dataset,
            fingerprint=prepared.dataset.fingerprint,
            version=prepared.dataset.identity.version,
            models=list(dict.fromkeys(spec.name for spec in specs)),
            scores=score_names,
            options=parsed_options.to_dict(),
            images_per_model=len(prepared.rows),
            confirm=confirm_request.to_dict() if confirm_request is not None else None,
        )
    task_ids = dispatch(job.id, list(job.models))
    with session_scope(settings.database_url) as session:
        crud.set_task_ids(session, job.id, task_ids)
    return Created(job, rows)


def job_models(settings: Settings, session: Any, models: Sequence[str] | None) -> list[ModelSpec]:
    """The specs a job will run: registered models, the zoo, or ``ARCH@SOURCE``; ``None`` is the
    whole built-in zoo, an empty list an error. Ad-hoc ``file:`` weights must lie under the
    data roots, like datasets (registered models were checked when registered)."""
    from zoorank.zoo.specs import default_models

    if models is not None and len(models) == 0:
        raise InvalidInputError("the model list is empty; name at least one model", field="models")
    from zoorank.zoo.load import check_reachable

    specs = crud.resolve_models(session, models or default_models())
    for spec in specs:
        check_reachable(spec, offline=settings.offline)
    if any(spec.weights.startswith("file:") for spec in specs):
        registered = {row.name for row in crud.registered_models(session)}
        check_weight_files(specs, settings.data_roots, trusted=registered)
    return specs


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


def leaderboard(session: Any, *, dataset: str, score: str | None, option_set: str | None) -> dict[str, Any]:
    """Models on ``dataset`` ranked by ``score`` (``None``: the default ranking), using only
    results that are comparable: one option set (:func:`zoorank.rank.comparability_key`), from
    succeeded or partial jobs, the latest value per (model, score). Pool-relative steps (NCTI,
    z-scores of the default ranking) and the ranking's uncertainty are recomputed over the
    models shown."""
    from zoorank_app.confirmations import confirmed_picks  # local: only the leaderboard reads confirmations

    check_ref(dataset)
    if score is not None:
        get_score(score)
    confirmed = confirmed_picks(session, dataset)
    sets: dict[str, dict[str, Any]] = {}
    latest: dict[str, dict[str, dict[str, tuple[Any, Any]]]] = {}
    for row, job in crud.leaderboard_rows(session, dataset=dataset):
        key = comparability_key(job.dataset_fingerprint or "", job.sample_ids or [], job.options)
        info = sets.setdefault(
            key,
            {
                "key": key,
                "options": {k: job.options.get(k) for k in VALUE_OPTIONS},
                "jobs": set(),
                "models": set(),
            },
        )
        info.setdefault("jobs", set()).add(job.id)
        info.setdefault("models", set()).add(row.model)
        info["last"] = row.created_at
        latest.setdefault(key, {}).setdefault(row.model, {})
        latest[key][row.model][row.score] = (row, job)
    listed = sorted(sets.values(), key=lambda i: i["last"], reverse=True)
    public_sets = [
        {"key": i["key"], "options": i["options"], "jobs": len(i["jobs"]), "models": len(i["models"])}
        for i in listed
    ]
    if not listed:
        return {
            "option_set": None,
            "option_sets": [],
            "rows": [],
            "policy": None,
            "rule": None,
            "left_out": {},
            "uncertainty": None,
            "confirmed": confirmed,
        }
    chosen = option_set or listed[0]["key"]
    if chosen not in sets:
        raise InvalidInputError(
            f"no results on {dataset} under option set {chosen!r}; option sets: "
            + ", ".join(i["key"] for i in listed),
            field="option_set",
        )
    per_model = latest[chosen]
    results = [
        ModelResult(
            model=model,
            scores={
                name: ScoreRecord(name, r.value, r.direction, r.params, r.details, r.seconds, r.error)
                for name, (r, _) in scores.items()
            },
        )
        for model, scores in per_model.items()
    ]
    score_names = sorted({name for scores in per_model.values() for name in scores})
    # The default's weights apply to its own score set: when the stored results hold it, the
    # board is ranked by the default over those scores; otherwise by the mean rank of what is there.
    default_set = set(DEFAULT_RANKING.scores) <= set(score_names)
    policy = job_policy(list(DEFAULT_RANKING.scores) if default_set else score_names)
    ranking, pool = summarise(results, score_names, policy)
    truth = crud.ground_truth(session, dataset=dataset)

    def source(model: str) -> tuple[Any, Any]:
        wanted = per_model[model].get(score) if score else None
        return wanted or max(per_model[model].values(), key=lambda rj: rj[0].created_at)

    if score is None:
        ordered = [(row["model"], row["value"], row) for row in ranking["aggregate"]]
        left_out, rule = ranking["left_out"], ranking["rule"]
    else:
        ordered = [
            (m, pool.get(score, {}).get(m, per_model[m][score][0].value), {})
            for m in ranking["by_score"].get(score, [])
        ]
        left_out, rule = {}, f"{score} alone"
    rows = []
    for position, (model, value, extra) in enumerate(ordered, start=1):
        row, job = source(model)
        gt = truth.get((job.dataset_fingerprint, model))
        rows.append(
            {
                "rank": extra.get("rank", position),
                "model": model,
                "dataset": dataset,
                "value": None if value is None else float(value),
                "failed": extra.get("failed"),
                "job_id": job.id,
                "computed_at": row.created_at,
                "p_top1": extra.get("p_top1"),
                "rank_interval": extra.get("rank_interval"),
                "ground_truth": gt.accuracy if gt else None,
                "ground_truth_mode": gt.mode if gt else None,
            }
        )
    return {
        "option_set": next(i for i in public_sets if i["key"] == chosen),
        "option_sets": public_sets,
        "rows": rows,
        "policy": ranking["policy"],
        "rule": rule,
        "left_out": left_out,
        "uncertainty": ranking.get("uncertainty") if score is None else None,
        "confirmed": confirmed,
    }


# -- validations (ground truth) -----------------------------------------------------------


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
    from zoorank.validate.groundtruth import TrainSettings, check_request

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


def stored_identity(job: Any) -> DatasetIdentity | None:
    """The dataset identity computed when ``job`` was submitted: its task checks the data
    against it (and does not hash it again) instead of working on data changed since."""
    if not job.dataset_fingerprint:
        return None
    return DatasetIdentity(job.dataset_version or "", job.dataset_fingerprint)


def validation_steps(scores: Sequence[str]) -> tuple[str, ...]:
    """What a validation does with each model, in order: a model row's ``images_total`` counts
    them, ``images_done`` those done."""
    return ("score", "train") if scores else ("train",)


def run_validation(settings: Settings, job_id: str) -> str:
    """Train every model of a validation job, store ground truth and the score agreement. Each
    model's row follows its steps: running while scored, queued (1 step done) until its turn to
    train, running while trained, then finished with its outcome (not when the whole job ends)."""
    from zoorank.validate import validate

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
            crud.finish_model(
                session,
                job_id,
                truth.model,
                status="succeeded" if truth.error is None else "failed",
                error=truth.error,
            )

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
            crud.finish_model(
                session,
                job_id,
                truth.model,
                status="succeeded" if truth.error is None else "failed",
                error=truth.error,
            )
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


def _jsonable_runs(runs: Sequence[Any]) -> list[Any]:
    from dataclasses import asdict

    from zoorank.rank import _jsonable

    return [_jsonable(asdict(run)) for run in runs]


def add_upload(settings: Settings, session: Any, stream: BinaryIO, *, name: str) -> tuple[Dataset, bool]:
    """Store an uploaded archive of CLASS/IMAGE files as a dataset (``upload:ID``, ID from the
    archive's hash) and return its row and whether it is new. Streams the archive to disk within
    the size limit, extracts it safely (:mod:`app.archives`), checks the classes and decodes
    every image (in chunks, so memory stays bounded).

    Deduplicated: an archive whose content (the dataset's fingerprint: class folders, file names
    and bytes) equals a stored dataset's is that dataset, whatever its packing (zip or tar, a top
    folder, compression): its row comes back with ``False`` and nothing new is kept.

    Raises:
        TooLargeError: the archive is larger than ``max_upload_mb``.
        InvalidInputError: an unsafe or corrupt archive, too few images per class, an image that
            does not decode or is too large.
    """
    settings.ensure_dirs()
    limit = settings.max_upload_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=settings.upload_dir) as tmp:
        archive_path = Path(tmp) / "upload"
        digest = hashlib.sha256()
        size = 0
        with archive_path.open("wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise TooLargeError(f"archive is larger than {settings.max_upload_mb} MB", field="file")
                digest.update(chunk)
                out.write(chunk)
        dataset_id = digest.hexdigest()[:32]
        target = settings.upload_dir / dataset_id
        if (same := session.get(Dataset, dataset_id)) is not None and target.exists():
            return same, False  # the very same archive again
        if not target.exists():
            staging = Path(tmp) / "extract"
            archives.extract_class_folders(
                archive_path, staging, max_files=settings.max_archive_files, max_bytes=limit * 10
            )
            shutil.move(str(staging), target)
    try:
        dataset = load_dataset(f"upload:{dataset_id}", upload_dir=settings.upload_dir)
        check_class_counts(dataset.labels, min_per_class=2, class_names=dataset.class_names)
        for start in range(0, len(dataset), 32):  # every image must decode (and not be a bomb)
            dataset.read(np.arange(start, min(start + 32, len(dataset))))  # 32 x 224 x 224 x 3: 5 MB
    except InvalidInputError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    same = crud.dataset_by_fingerprint(session, dataset.fingerprint)
    if same is not None:
        if same.id != dataset_id:
            shutil.rmtree(target, ignore_errors=True)
        return same, False
    return (
        crud.add_dataset(
            session,
            Dataset(
                id=dataset_id,
                name=name or dataset_id,
                fingerprint=dataset.fingerprint,
                num_images=len(dataset),
                num_classes=dataset.num_classes,
                class_names=dataset.class_names,
            ),
        ),
        True,
    )


def register_model(
    settings: Settings,
    session: Any,
    *,
    name: str,
    architecture: str,
    weights: str,
    imagenet_top1: float | None,
    description: str,
) -> ModelSpec:
    """A model in the service's own registry (the database), beside the built-in zoo that the
    library and the CLI know. A ``file:`` weight is loaded and checked now, not in a worker."""
    from zoorank.zoo import list_models, parse_model_ref

    if name in list_models():
        raise ConflictError(f"model {name!r} exists in the built-in zoo", field="name")
    if any(r.name == name for r in crud.registered_models(session)):
        raise ConflictError(f"model {name!r} is already registered", field="name")
    if weights == "offline":
        raise InvalidInputError("offline weights are already in the built-in zoo", field="weights")
    parsed = parse_model_ref(f"{architecture}@{weights}")
    if parsed.weights.startswith("file:"):
        path = resolve_under_roots(
            parsed.weights[5:], settings.data_roots, field="weights", what="weight file"
        )
        from zoorank.zoo.load import create_model

        spec = ModelSpec(name, parsed.architecture, f"file:{path}", imagenet_top1)
        create_model(spec)
    else:
        top1 = imagenet_top1 if imagenet_top1 is not None else parsed.imagenet_top1
        spec = ModelSpec(name, parsed.architecture, parsed.weights, top1)
    crud.add_model(session, spec, description)
    return spec
