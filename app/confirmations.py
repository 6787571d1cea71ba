"""The confirmation stage of a ranking job, as functions over (settings, ids).

``POST /v1/jobs/{id}/confirm`` calls :func:`submit`; each (model, rung) is one
``zoorank.confirm_unit`` task on the ``gpu`` queue, which calls :func:`run_unit`; after every
unit :func:`advance` replays successive halving on what the units found
(:func:`zoorank.confirm.stage.decide`) and queues the next rung, or closes the confirmation with
its answer. The database holds the plan and every unit's outcome; the checkpoints of the rungs
lie in the shared cache (``<cache_dir>/confirm/<id>``), so a unit whose worker was killed is
sent again by :mod:`app.sweeper` and resumes from the previous rung's checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from zoorank_app.db import crud
from zoorank_app.db.models import Confirmation, ConfirmUnit, Job, utcnow
from zoorank_app.db.session import DATABASE_DOWN, session_scope
from zoorank_app.logs import log_context
from zoorank_app.progress import eta_seconds
from zoorank_app.settings import Settings

from zoorank.confirm.plan import ConfirmPlan, plan_confirmation, plan_from_dict, ranking_order
from zoorank.confirm.request import ConfirmRequest
from zoorank.confirm.stage import answer, decide
from zoorank.confirm.units import UnitResult, checkpoint_dir, train_unit
from zoorank.data import DatasetIdentity, load_dataset
from zoorank.errors import Cancelled, ConflictError, InvalidInputError, ZoorankError
from zoorank.states import TERMINAL

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
CONFIRMABLE = ("succeeded", "partial")
UNIT_DONE = ("succeeded", "failed", "cancelled")
CLOSED = sorted(str(s) for s in TERMINAL)
Send = Callable[[str, str, int], None]  # confirmation id, model, rung


class NotFound(LookupError):
    """No such job or confirmation (404)."""


def checkpoints_root(settings: Settings, confirmation_id: str) -> Path:
    return Path(settings.cache_dir) / "confirm" / confirmation_id


def _job(session: Session, job_id: str) -> Job:
    job = crud.get_job(session, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def make_plan(settings: Settings, session: Session, job: Job, request: ConfirmRequest) -> ConfirmPlan:
    """The plan for confirming ``job``'s ranking. 409 (:class:`ConflictError`) unless the job
    is a ranking that finished with a ranking; 422 for what the request or the data refuse."""
    if job.kind != "ranking":
        raise InvalidInputError(
            f"job {job.id} is a {job.kind} job; only a ranking can be confirmed", field="job"
        )
    if job.status not in CONFIRMABLE or not job.ranking:
        raise ConflictError(
            f"job {job.id} is {job.status}: a confirmation needs a finished ranking (succeeded or partial);"
            " wait for it to finish",
            field="job",
        )
    expect = (
        DatasetIdentity(job.dataset_version or "", job.dataset_fingerprint)
        if job.dataset_fingerprint
        else None
    )
    dataset = load_dataset(
        job.dataset, data_roots=settings.data_roots, upload_dir=settings.upload_dir, expect=expect
    )
    speeds = {row.model: row.images_per_second for row in crud.job_models(session, job.id)}
    return plan_confirmation(
        ranking_order(job.ranking),
        dataset.labels,
        request,
        images_per_second=speeds,
        scored_rows=job.sample_ids,
    )


def dry_run(settings: Settings, job_id: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """What a confirmation would do and cost, with nothing created."""
    request = ConfirmRequest.from_dict(options)
    with session_scope(settings.database_url) as session:
        plan = make_plan(settings, session, _job(session, job_id), request)
    return {
        "dry_run": True,
        "job_id": job_id,
        "summary": plan.summary(),
        "plan": _public_plan(plan.to_dict()),
    }


def submit(settings: Settings, job_id: str, options: dict[str, Any] | None, send: Send) -> str:
    """Create a confirmation of ``job_id`` and queue its first rung; returns its id. 409 while
    another confirmation of the job is open."""
    request = ConfirmRequest.from_dict(options)
    with session_scope(settings.database_url) as session:
        job = _job(session, job_id)
        job_id = job.id  # a short id given: the full one from here on
        plan = make_plan(settings, session, job, request)
        open_one = session.scalars(
            select(Confirmation.id).where(Confirmation.job_id == job_id, Confirmation.status.not_in(CLOSED))
        ).first()
        if open_one is not None:
            raise ConflictError(
                f"job {job_id} already has confirmation {open_one} in progress; cancel it or wait for it",
                field="job",
            )
        row = Confirmation(
            id=crud.new_id(), job_id=job_id, status="queued", options=request.to_dict(), plan=plan.to_dict()
        )
        session.add(row)
        confirmation_id = row.id
    advance(settings, confirmation_id, send)
    return confirmation_id


def start_requested(settings: Settings, job_id: str, send: Send) -> str | None:
    """Start the confirmation a job asked for at submission, once its ranking has finished
    (called after the job is closed, by the worker and by the sweeper; at most one starts).
    What only the finished ranking can refuse (a budget in seconds below its minimum) is
    recorded as a failed confirmation with the reason. Returns its id, or None."""
    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id)
        if job is None or job.confirm is None or job.status not in CONFIRMABLE:
            return None
        if session.scalars(select(Confirmation.id).where(Confirmation.job_id == job_id)).first() is not None:
            return None
        options = dict(job.confirm)
    try:
        return submit(settings, job_id, options, send)
    except ConflictError:
        return None  # another caller started it
    except ZoorankError as exc:
        with session_scope(settings.database_url) as session:
            row = Confirmation(
                id=crud.new_id(),
                job_id=job_id,
                status="failed",
                options=options,
                plan={},
                error=str(exc),
                finished_at=utcnow(),
            )
            session.add(row)
            return row.id


def _unit_result(unit: ConfirmUnit) -> UnitResult:
    return UnitResult(
        model=unit.model,
        rung=unit.rung,
        end_epoch=unit.end_epoch,
        history=list(unit.history or []),
        val_correct=list(unit.val_correct) if unit.val_correct is not None else None,
        diverged=unit.diverged,
        error=unit.error,
        seconds=unit.seconds or 0.0,
    )


def _insert_unit(session: Session, values: dict[str, Any]) -> bool:
    """A queued unit unless it exists; True when this call made it (and must send it)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(ConfirmUnit)
        .values(**values, status="queued", epochs_done=0, attempts=0, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["confirmation_id", "model", "rung"])
    )
    return bool(getattr(session.execute(statement), "rowcount", 0))


def advance(settings: Settings, confirmation_id: str, send: Send) -> str:
    """Replay the halving on the finished units: queue the next rung's units (each made and
    sent once, however many callers race), or close the confirmation with its answer. Returns
    the confirmation's status."""
    to_send: list[tuple[str, int]] = []
    with session_scope(settings.database_url) as session:
        row = session.get(Confirmation, confirmation_id)
        if row is None:
            return "missing"
        if row.status in TERMINAL:
            return row.status
        plan = plan_from_dict(row.plan)
        units = list(
            session.scalars(select(ConfirmUnit).where(ConfirmUnit.confirmation_id == confirmation_id))
        )
        finished = [_unit_result(u) for u in units if u.status in ("succeeded", "failed")]
        result = decide(plan, finished)
        if not result.finished:
            rung = result.waiting_rung
            assert rung is not None
            for model in result.waiting_for:
                values = {
                    "confirmation_id": confirmation_id,
                    "model": model,
                    "rung": rung,
                    "end_epoch": plan.schedule[rung - 1],
                }
                if _insert_unit(session, values):
                    to_send.append((model, rung))
            status = row.status
        else:
            status = "succeeded" if result.pick is not None else "failed"
            closed = session.execute(
                update(Confirmation)
                .where(Confirmation.id == confirmation_id, Confirmation.status.not_in(CLOSED))
                .values(
                    status=status,
                    result=answer(plan, result, finished),
                    error=None if result.pick else result.note,
                    finished_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if not getattr(closed, "rowcount", 0):
                return row.status
    if result.finished:
        shutil.rmtree(checkpoints_root(settings, confirmation_id), ignore_errors=True)
        log.info("confirmation %s %s: pick %s", confirmation_id, status, result.pick)
    for model, rung in to_send:
        send(confirmation_id, model, rung)
    return status


def _claim(
    session: Session, confirmation_id: str, model: str, rung: int, runner: str | None, stale_after: float
) -> int | str:
    """Claim a unit for the task ``runner`` and count the attempt (as ``crud.start_model``)."""
    row = session.get(Confirmation, confirmation_id)
    if row is None:
        return "missing"
    if row.status == "cancelled":
        return "cancelled"
    unit = session.scalars(
        select(ConfirmUnit)
        .where(
            ConfirmUnit.confirmation_id == confirmation_id,
            ConfirmUnit.model == model,
            ConfirmUnit.rung == rung,
        )
        .with_for_update()
    ).one_or_none()
    if unit is None:
        return "missing"
    if unit.status in UNIT_DONE:
        return "done"
    if unit.status == "running" and runner is not None and unit.runner not in (None, runner):
        beat = unit.heartbeat_at or unit.started_at
        if beat is not None and (utcnow() - crud.as_utc(beat)).total_seconds() < stale_after:
            return "running"
    if row.status == "queued":
        row.status, row.started_at = "running", utcnow()
    unit.attempts += 1
    unit.status, unit.runner, unit.epochs_done = "running", runner, 0
    unit.started_at = unit.heartbeat_at = utcnow()
    return unit.attempts


def _update_unit(
    session: Session, confirmation_id: str, model: str, rung: int, *, running: bool = True, **values: Any
) -> bool:
    """Set ``values`` on one unit (only while it runs, with ``running``); whether it changed."""
    where = [
        ConfirmUnit.confirmation_id == confirmation_id,
        ConfirmUnit.model == model,
        ConfirmUnit.rung == rung,
    ]
    if running:
        where.append(ConfirmUnit.status == "running")
    done = session.execute(
        update(ConfirmUnit).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return bool(getattr(done, "rowcount", 0))


def _finish_unit(session: Session, confirmation_id: str, model: str, rung: int, **values: Any) -> bool:
    """Write a unit's outcome once, unless the confirmation was cancelled meanwhile."""
    row = session.get(Confirmation, confirmation_id)
    if row is None or row.status == "cancelled":  # None: deleted with its job
        return False
    return _update_unit(session, confirmation_id, model, rung, finished_at=utcnow(), **values)


def run_unit(
    settings: Settings, confirmation_id: str, model: str, rung: int, send: Send, task_id: str | None = None
) -> dict[str, Any]:
    """Train one (model, rung) and advance the confirmation. Never raises for the model's own
    failure: the unit records it, the model leaves the run with the reason, the others go on."""
    outcome = {"confirmation": confirmation_id, "model": model, "rung": rung}
    with session_scope(settings.database_url) as session:
        claim = _claim(session, confirmation_id, model, rung, task_id, settings.stale_after)
        if isinstance(claim, str):
            return {**outcome, "status": claim}
        row = session.get(Confirmation, confirmation_id)
        assert row is not None
        plan = plan_from_dict(row.plan)
        job = _job(session, row.job_id)
        ref, version, fingerprint = job.dataset, job.dataset_version, job.dataset_fingerprint
        spec = crud.resolve_model(session, model)
    if claim > MAX_ATTEMPTS:
        with session_scope(settings.database_url) as session:
            _finish_unit(
                session,
                confirmation_id,
                model,
                rung,
                status="failed",
                error=f"gave up after {MAX_ATTEMPTS} attempts (worker lost)",
            )
        advance(settings, confirmation_id, send)
        return {**outcome, "status": "failed"}
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.stale_after / 4):
            try:
                with session_scope(settings.database_url) as session:
                    _update_unit(session, confirmation_id, model, rung, heartbeat_at=utcnow())
            except Exception as exc:  # a database blip: the next beat tries again
                log.warning("heartbeat of %s rung %d failed: %s", model, rung, exc)

    checked = [0.0]

    def should_stop() -> None:
        """Between steps, at most once a second: a cancelled confirmation stops the rung."""
        if time.monotonic() - checked[0] < 1.0:
            return
        checked[0] = time.monotonic()
        try:
            with session_scope(settings.database_url) as session:
                status = session.scalar(select(Confirmation.status).where(Confirmation.id == confirmation_id))
        except DATABASE_DOWN:
            return  # the work goes on; the outcome is written after one more check
        if status in (None, "cancelled"):  # None: deleted with its job
            raise Cancelled(f"confirmation {confirmation_id} cancelled")

    def on_epoch(epoch: int, end: int) -> None:
        try:
            with session_scope(settings.database_url) as session:
                _update_unit(
                    session,
                    confirmation_id,
                    model,
                    rung,
                    epochs_done=epoch - (plan.schedule[rung - 2] if rung > 1 else 0),
                    heartbeat_at=utcnow(),
                )
        except DATABASE_DOWN as exc:
            log.warning("progress of %s rung %d not written: %s", model, rung, exc)

    threading.Thread(target=beat, name=f"heartbeat-{model}-{rung}", daemon=True).start()
    folder = checkpoint_dir(checkpoints_root(settings, confirmation_id), model)
    try:
        with log_context(job_id=confirmation_id, model=model):
            log.info("confirm unit started (rung %d, attempt %d)", rung, claim)
            try:
                dataset = load_dataset(
                    ref,
                    data_roots=settings.data_roots,
                    upload_dir=settings.upload_dir,
                    expect=DatasetIdentity(version or "", fingerprint) if fingerprint else None,
                )
                settings_ = plan.request.train_settings()
                if settings_.device == "auto":
                    settings_.device = settings.device
                unit = train_unit(
                    spec,
                    dataset,
                    plan.split,
                    settings_,
                    schedule=plan.schedule,
                    rung=rung,
                    checkpoints=folder,
                    loss=plan.request.loss,
                    alpha=plan.request.alpha,
                    seed=plan.request.seed,
                    should_stop=should_stop,
                    on_epoch=on_epoch,
                )
                values: dict[str, Any] = {
                    "status": "succeeded",
                    "history": unit.history,
                    "val_correct": unit.val_correct,
                    "diverged": unit.diverged,
                    "seconds": unit.seconds,
                }
            except Cancelled:
                (folder / f"rung-{rung}.pt").unlink(missing_ok=True)
                with session_scope(settings.database_url) as session:
                    _update_unit(
                        session,
                        confirmation_id,
                        model,
                        rung,
                        running=False,
                        status="cancelled",
                        finished_at=utcnow(),
                    )
                log.info("confirm unit stopped: the confirmation was cancelled")
                return {**outcome, "status": "cancelled"}
            except Exception as exc:
                log.exception("confirm unit %s rung %d failed", model, rung)
                values = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            with session_scope(settings.database_url) as session:
                written = _finish_unit(session, confirmation_id, model, rung, **values)
            if not written:  # cancelled after the last check: nothing of it stays
                (folder / f"rung-{rung}.pt").unlink(missing_ok=True)
                return {**outcome, "status": "cancelled"}
            log.info("confirm unit %s", values["status"])
    finally:
        stop.set()
    advance(settings, confirmation_id, send)
    return {**outcome, "status": values["status"]}


def cancel(settings: Settings, job_id: str) -> dict[str, Any]:
    """Cancel the job's open confirmation: queued units never start, a running unit stops
    between two steps and writes nothing. 409 when there is none open."""
    with session_scope(settings.database_url) as session:
        job_id = _job(session, job_id).id
        row = session.scalars(
            select(Confirmation)
            .where(Confirmation.job_id == job_id, Confirmation.status.not_in(CLOSED))
            .with_for_update()
        ).first()
        if row is None:
            raise ConflictError(f"job {job_id} has no confirmation in progress to cancel", field="job")
        row.status, row.finished_at = "cancelled", utcnow()
        session.execute(
            update(ConfirmUnit)
            .where(ConfirmUnit.confirmation_id == row.id, ConfirmUnit.status == "queued")
            .values(status="cancelled", finished_at=utcnow())
        )
        confirmation_id = row.id
    shutil.rmtree(checkpoints_root(settings, confirmation_id), ignore_errors=True)
    with session_scope(settings.database_url) as session:
        return public(session, session.get(Confirmation, confirmation_id))  # type: ignore[arg-type]


def latest(session: Session, job_id: str) -> Confirmation | None:
    return session.scalars(
        select(Confirmation).where(Confirmation.job_id == job_id).order_by(Confirmation.created_at.desc())
    ).first()


def _public_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan without its row lists (the counts stay)."""
    if not plan:
        return {}
    split = {k: v for k, v in plan["split"].items() if k not in ("fine_tune", "validation")}
    return {**plan, "split": split}


def progress(plan: dict[str, Any], units: list[ConfirmUnit]) -> dict[str, Any]:
    """Epochs done of the most the run can take (the plan's worst case), the rung in progress,
    the unit(s) training, and an ETA at the pace measured so far (the plan's estimate before)."""
    schedule, eta, k = plan["schedule"], plan["eta"], len(plan["shortlist"])
    planned, n, trained = 0, k, 0
    for end in schedule:
        planned += n * (end - trained)
        trained, n = end, -(-n // eta)
    done = sum(
        (u.end_epoch - (schedule[u.rung - 2] if u.rung > 1 else 0))
        if u.status == "succeeded"
        else u.epochs_done
        for u in units
        if u.status in ("succeeded", "running")
    )
    measured = [(u.seconds, len(u.history or [])) for u in units if u.status == "succeeded" and u.history]
    per_epoch = (
        sum(s or 0.0 for s, _ in measured) / max(1, sum(e for _, e in measured))
        if measured
        else (plan.get("estimated_seconds") or 0.0) / max(1, planned) or None
    )
    running = [
        {
            "model": u.model,
            "rung": u.rung,
            "epoch": (schedule[u.rung - 2] if u.rung > 1 else 0) + u.epochs_done,
            "of": u.end_epoch,
            "attempts": u.attempts,
        }
        for u in units
        if u.status == "running"
    ]
    rung = max((u.rung for u in units), default=0)
    return {
        "rung": rung,
        "rungs": len(schedule),
        "epochs_done": done,
        "epochs_planned": planned,
        "fraction": min(1.0, done / planned) if planned else 1.0,
        "eta_seconds": eta_seconds(done, planned, per_epoch),
        "training": running,
        "text": (
            f"rung {rung} of {len(schedule)}; "
            + (
                ", ".join(f"{r['model']}: epoch {r['epoch']} of {r['of']}" for r in running)
                if running
                else "waiting for a worker"
            )
        ),
    }


def public(session: Session, row: Confirmation) -> dict[str, Any]:
    """The confirmation as the API shows it."""
    units = list(
        session.scalars(
            select(ConfirmUnit)
            .where(ConfirmUnit.confirmation_id == row.id)
            .order_by(ConfirmUnit.rung, ConfirmUnit.id)
        )
    )
    return {
        "id": row.id,
        "job_id": row.job_id,
        "status": row.status,
        "options": row.options,
        "plan": _public_plan(row.plan),
        "progress": {
            **(progress(row.plan, units) if row.plan else {}),
            **({"text": row.status, "eta_seconds": 0.0} if row.status in TERMINAL else {}),
        },
        "units": [
            {
                "model": u.model,
                "rung": u.rung,
                "end_epoch": u.end_epoch,
                "status": u.status,
                "attempts": u.attempts,
                "epochs_done": u.epochs_done,
                "seconds": u.seconds,
                "diverged": u.diverged,
                "error": u.error,
            }
            for u in units
        ],
        "result": row.result,
        "error": row.error,
        "created_at": crud.as_utc(row.created_at).isoformat(),
        "started_at": crud.as_utc(row.started_at).isoformat() if row.started_at else None,
        "finished_at": crud.as_utc(row.finished_at).isoformat() if row.finished_at else None,
    }


def open_confirmations(session: Session) -> list[Confirmation]:
    return list(
        session.scalars(
            select(Confirmation).where(Confirmation.status.not_in(CLOSED)).order_by(Confirmation.created_at)
        )
    )


def confirmed_picks(session: Session, dataset: str) -> list[dict[str, Any]]:
    """The confirmed pick of every finished confirmation of a ranking on ``dataset``, newest
    first (the leaderboard's "confirmed pick")."""
    rows = session.execute(
        select(Confirmation, Job)
        .join(Job, Job.id == Confirmation.job_id)
        .where(Job.dataset == dataset, Confirmation.status == "succeeded")
        .order_by(Confirmation.finished_at.desc())
    ).all()
    return [
        {
            "confirmation": c.id,
            "job_id": j.id,
            "pick": (c.result or {}).get("pick"),
            "val_accuracy": (c.result or {}).get("pick_val_accuracy"),
            "val_interval": (c.result or {}).get("pick_interval"),
            "runner_up": (c.result or {}).get("runner_up"),
            "verdict": (c.result or {}).get("verdict"),
            "agrees_with_ranking": (c.result or {}).get("agrees_with_ranking"),
            "finished_at": crud.as_utc(c.finished_at).isoformat() if c.finished_at else None,
        }
        for c, j in rows
    ]
