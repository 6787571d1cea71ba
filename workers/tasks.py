"""Celery tasks: a ranking's two stages per (job, model) and the chord callback that closes the
job; a validation job; one (model, rung) of a confirmation, which queues the next rung itself.

A database that is unreachable for a while (restarting, failing over) makes a task retry with
growing pauses instead of failing: the job's record is in the database, so nothing is decided
until it answers again. A model task that still cannot reach it after the retries returns a
failure instead of raising, so that the chord's callback still runs and closes the job.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from zoorank_app.db.session import DATABASE_DOWN
from zoorank_app.services import runner, validations
from zoorank_app.settings import get_settings
from zoorank_app.task_names import CONFIRM_UNIT, EXTRACT_MODEL, FINALISE_JOB, RANK_MODEL, VALIDATE_JOB

from zoorank.rank import Stage

log = logging.getLogger(__name__)

DATABASE_RETRIES = 6  # pauses 2, 4, 8, 16, 32, 60 s: about two minutes in all
# a task that retries while the database is down; acknowledged late, re-queued if its worker dies
RETRIED: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": DATABASE_RETRIES,
}


def _pause(task: Task) -> int:
    return int(min(60, 2 ** (task.request.retries + 1)))


def _model_stage(task: Task, job_id: str, model: str, stage: Stage) -> dict[str, Any]:
    try:
        return runner.run_model(get_settings(), job_id, model, task_id=task.request.id, stage=stage)
    except DATABASE_DOWN as exc:
        if task.request.retries < DATABASE_RETRIES:
            log.warning("job %s model %s: database unreachable (%s); retrying", job_id, model, exc)
            raise task.retry(exc=exc, countdown=_pause(task)) from exc
        log.error("job %s model %s: database unreachable after %d retries", job_id, model, DATABASE_RETRIES)
        return {"model": model, "status": "failed", "error": f"database unreachable: {exc}"}


@shared_task(name=EXTRACT_MODEL, **RETRIED)
def extract_model(self: Task, job_id: str, model: str) -> dict[str, Any]:
    """The forward passes (into the shared feature cache) and the scores that need the model."""
    return _model_stage(self, job_id, model, "device")


@shared_task(name=RANK_MODEL, **RETRIED)
def rank_model(self: Task, job_id: str, model: str) -> dict[str, Any]:
    """The other scores, from the cached arrays; closes the model."""
    return _model_stage(self, job_id, model, "arrays")


@shared_task(name=FINALISE_JOB, **RETRIED)
def finalise_job(self: Task, member_results: list[dict[str, Any]], job_id: str) -> str:
    from zoorank_app import confirmations

    try:
        status = runner.finalise_job(get_settings(), job_id)
        confirmations.start_requested(get_settings(), job_id, _sender(self))
        return status
    except DATABASE_DOWN as exc:
        raise self.retry(exc=exc, countdown=_pause(self)) from exc


def _sender(task: Task) -> Any:
    """Queues one (model, rung) of a confirmation through the task's own app."""

    def send(confirmation_id: str, model: str, rung: int) -> None:
        task.app.send_task(CONFIRM_UNIT, args=(confirmation_id, model, rung))

    return send


@shared_task(name=VALIDATE_JOB, acks_late=True, reject_on_worker_lost=True)
def validate_job(job_id: str) -> str:
    return validations.run_validation(get_settings(), job_id)


@shared_task(name=CONFIRM_UNIT, **RETRIED)
def confirm_unit(self: Task, confirmation_id: str, model: str, rung: int) -> dict[str, Any]:
    """One (model, rung) of a confirmation: trains from the previous rung's checkpoint, then
    advances the confirmation (queues the next rung, or closes it)."""
    from zoorank_app import confirmations

    try:
        return confirmations.run_unit(
            get_settings(), confirmation_id, model, rung, _sender(self), task_id=self.request.id
        )
    except DATABASE_DOWN as exc:
        raise self.retry(exc=exc, countdown=_pause(self)) from exc
