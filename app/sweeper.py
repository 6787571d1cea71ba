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
  the broker's state).

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

from app import metrics, services
from app.db import crud
from app.db.models import utcnow
from app.db.session import session_scope
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    resent_stale: list[tuple[str, str]] = field(default_factory=list)  # (job, model)
    resent_lost: list[tuple[str, str]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)  # (job, status)


if TYPE_CHECKING:
    from zoorank.rank import Stage

    Send = Callable[[str, str, Stage], None]


def sweep(settings: Settings, send: Send, queue_depth: Callable[[], int | None]) -> SweepReport:
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


def start(settings: Settings, send: Send, queue_depth: Callable[[], int | None]) -> threading.Event:
    """Run :func:`sweep` every ``settings.sweep_interval`` seconds in a daemon thread; set the
    returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval):
            try:
                sweep(settings, send, queue_depth)
            except Exception:  # the database may be down: the next pass tries again
                log.exception("sweep failed")

    threading.Thread(target=loop, name="zoorank-sweeper", daemon=True).start()
    return stop
