"""The database is the record of what remains to do; the broker only carries messages.

:func:`sweep` looks at every open ranking job and repairs what a lost worker or a lost message
left behind:

* a model ``running`` whose task has not written a heartbeat for ``stale_after`` seconds lost
  its worker (killed -9 with its pool, host down): its task is sent again (a redelivery by the
  broker would only come after the visibility timeout). The attempt counter still bounds how
  often a model is tried. Until a task claims it, it waits like a queued model: sent again only
  while the broker's queues are empty, so that with no worker running the messages do not pile
  up (one per period) and a restarted worker takes the model from the one waiting;
* a model ``queued`` for more than ``resend_after`` seconds while the broker's queues are empty
  lost its message (a broker restarted without its data): its task is sent again. A duplicate
  is harmless: the second task finds the model running or done and does nothing. A model
  handed over by its forward-pass stage to its arrays stage (``crud.HANDED_OVER``) waits in a
  queue like a queued one, and is treated so;
* a model whose forward-pass stage finished once (handed over, or lost in its arrays stage) is
  sent again from its arrays stage only (``crud.resume_stage``): its forward pass and its
  model-needing scores are not redone, the features wait in the cache;
* a job whose models have all ended is closed (its chord callback may have been lost with
  the broker's state);
* the units of an open confirmation (one per (model, rung), :mod:`app.confirmations`) are
  treated like models: a running unit with a stale heartbeat, or a queued one waiting longer
  than ``resend_after`` while the queues are empty, is sent again (it resumes from the previous
  rung's checkpoint); a confirmation whose units have all ended is advanced (the last unit's
  worker may have died between writing its outcome and queuing the next rung).

The API process runs it every ``sweep_interval`` seconds (:func:`start`); several API replicas
may: each re-send is claimed in the database first, once per period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from zoorank_app import metrics, services
from zoorank_app.db import crud
from zoorank_app.db.models import utcnow
from zoorank_app.db.session import session_scope
from zoorank_app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    resent_stale: list[tuple[str, str]] = field(default_factory=list)  # (job, model)
    resent_lost: list[tuple[str, str]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)  # (job, status)
    resent_units: list[tuple[str, str, int]] = field(default_factory=list)  # (confirmation, model, rung)
    advanced: list[tuple[str, str]] = field(default_factory=list)  # (confirmation, status)


if TYPE_CHECKING:
    from zoorank.rank import Stage

    Send = Callable[[str, str, Stage], None]
    SendConfirm = Callable[[str, str, int], None]


def sweep(
    settings: Settings,
    send: Send,
    queue_depth: Callable[[], int | None],
    send_confirm: SendConfirm | None = None,
) -> SweepReport:
    """One pass over the open jobs (see the module docstring). ``send(job_id, model, stage)``
    queues a model's work from ``stage`` on (``"device"``: all of it; ``"arrays"``: the scores on
    cached arrays only); ``queue_depth()`` is the number of messages waiting in the broker's
    queue, or None when the transport cannot tell (then no queued model is re-sent)."""
    report = SweepReport()
    stages: dict[tuple[str, str], Stage] = {}
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.stale_after)
    resend_before = now - timedelta(seconds=settings.resend_after)
    asked: list[int | None] = []  # the broker's queue depth, asked once and only when needed

    def queues_empty() -> bool:
        if not asked:
            asked.append(queue_depth())
        return asked[0] == 0

    with session_scope(settings.database_url) as session:
        jobs = [(job.id, job.created_at) for job in crud.open_jobs(session)]
    for job_id, created in jobs:
        with session_scope(settings.database_url) as session:
            rows = crud.job_models(session, job_id)
            if rows and all(row.status in crud.TERMINAL for row in rows):
                closing = True
            else:
                closing = False
                for row in rows:
                    handed_over = row.status == "running" and row.runner == crud.HANDED_OVER
                    if handed_over or row.status == "queued":
                        waiting_since = (
                            (row.heartbeat_at or created) if handed_over else (row.resent_at or created)
                        )
                        if (
                            crud.as_utc(waiting_since) < resend_before
                            and queues_empty()
                            and crud.mark_resent(session, row.id, resend_before)
                        ):
                            report.resent_lost.append((job_id, row.model))
                            stages[job_id, row.model] = crud.resume_stage(row)
                    elif row.status == "running":
                        beat = row.heartbeat_at or row.started_at
                        stale = beat is not None and crud.as_utc(beat) < stale_before
                        # Once re-sent, the model waits like a queued one: sent again only if
                        # that message is in no queue (no pile-up while no worker runs).
                        waiting = (
                            stale
                            and beat is not None
                            and row.resent_at is not None
                            and crud.as_utc(row.resent_at) > crud.as_utc(beat)
                        )
                        if waiting:
                            stale = queues_empty()
                        if stale and crud.mark_resent(session, row.id, stale_before):
                            report.resent_stale.append((job_id, row.model))
                            stages[job_id, row.model] = crud.resume_stage(row)
        if closing:
            report.closed.append((job_id, services.finalise_job(settings, job_id)))
    for job_id, model in [*report.resent_stale, *report.resent_lost]:
        send(job_id, model, stages[job_id, model])
    if send_confirm is not None:
        from zoorank_app import confirmations

        for job_id, _ in report.closed:  # the callback that would have started it was lost too
            confirmations.start_requested(settings, job_id, send_confirm)
        _sweep_confirmations(settings, send_confirm, queues_empty, report)
    metrics.SWEEPER_RESENT.labels("stale heartbeat").inc(len(report.resent_stale))
    metrics.SWEEPER_RESENT.labels("lost message").inc(len(report.resent_lost))
    metrics.SWEEPER_CLOSED.inc(len(report.closed))
    if report.resent_stale or report.resent_lost or report.closed:
        log.warning(
            "sweep: re-sent %d stale and %d lost model tasks, closed %d jobs",
            len(report.resent_stale),
            len(report.resent_lost),
            len(report.closed),
        )
    return report


def _sweep_confirmations(
    settings: Settings, send: SendConfirm, queues_empty: Callable[[], bool], report: SweepReport
) -> None:
    from sqlalchemy import select, update
    from zoorank_app import confirmations
    from zoorank_app.db.models import ConfirmUnit

    now = utcnow()
    stale_before = now - timedelta(seconds=settings.stale_after)
    resend_before = now - timedelta(seconds=settings.resend_after)
    with session_scope(settings.database_url) as session:
        open_ids = [row.id for row in confirmations.open_confirmations(session)]
    for confirmation_id in open_ids:
        with session_scope(settings.database_url) as session:
            units = list(
                session.scalars(select(ConfirmUnit).where(ConfirmUnit.confirmation_id == confirmation_id))
            )
            for unit in units:
                if unit.status == "running":
                    beat = unit.heartbeat_at or unit.started_at
                    due = beat is not None and crud.as_utc(beat) < stale_before
                    since = stale_before
                    if (
                        due
                        and unit.resent_at is not None
                        and beat is not None
                        and crud.as_utc(unit.resent_at) > crud.as_utc(beat)
                    ):
                        due = queues_empty()  # re-sent once already: again only if that message is gone
                elif unit.status == "queued":
                    waiting = unit.resent_at or unit.created_at
                    due = crud.as_utc(waiting) < resend_before and queues_empty()
                    since = resend_before
                else:
                    continue
                if due:
                    claimed = session.execute(
                        update(ConfirmUnit)
                        .where(
                            ConfirmUnit.id == unit.id,
                            (ConfirmUnit.resent_at.is_(None)) | (ConfirmUnit.resent_at < since),
                        )
                        .values(resent_at=utcnow())
                        .execution_options(synchronize_session=False)
                    )
                    if getattr(claimed, "rowcount", 0):
                        report.resent_units.append((confirmation_id, unit.model, unit.rung))
            idle = not any(u.status in ("queued", "running") for u in units)
        if idle:
            report.advanced.append((confirmation_id, confirmations.advance(settings, confirmation_id, send)))
    for confirmation_id, model, rung in report.resent_units:
        send(confirmation_id, model, rung)
    if report.resent_units:
        log.warning("sweep: re-sent %d confirmation units", len(report.resent_units))
    metrics.SWEEPER_RESENT.labels("confirmation unit").inc(len(report.resent_units))


def start(
    settings: Settings,
    send: Send,
    queue_depth: Callable[[], int | None],
    send_confirm: SendConfirm | None = None,
) -> threading.Event:
    """Run :func:`sweep` every ``settings.sweep_interval`` seconds in a daemon thread; set the
    returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval):
            try:
                sweep(settings, send, queue_depth, send_confirm)
            except Exception:  # the database may be down: the next pass tries again
                log.exception("sweep failed")

    threading.Thread(target=loop, name="zoorank-sweeper", daemon=True).start()
    return stop
