"""The database is the record of what remains to do; the broker only carries messages.

:func:`sweep` looks at every open ranking job and repairs what a lost worker or a lost message
left behind. It asks the broker (:mod:`app.broker_contents`) two things, without consuming:
which instance it is (Redis ``run_id``), and which work its messages carry, in the queues or
reserved by a worker and not yet acknowledged. A model's message is lost when

* the broker restarted: its instance changed since this process's previous sweep. A Redis that
  keeps nothing on disk lost every message it held, so each model that was waiting for one
  then (queued, handed over, or re-sent after its worker died) is sent again at once,
  whatever else is queued; a model a worker runs, with a fresh heartbeat, is left to it;
* or it has waited for ``resend_after`` seconds and no message of the broker will run it:
  another job's work in the queues does not hide it. Where the broker cannot list its messages
  (RabbitMQ) the older rule stays: lost only while the broker's queues are empty.

The embedded filesystem broker lists its messages (one file each, gone once a worker takes it)
and has no instance: its files outlive a restart. What it repairs:

* a model ``running`` whose task has not written a heartbeat for ``stale_after`` seconds lost
  its worker (killed -9 with its pool, host down): its task is sent again (a redelivery by the
  broker would only come after the visibility timeout). The attempt counter still bounds how
  often a model is tried. Until a task claims it, it waits like a queued model: sent again only
  when that message is lost, so that with no worker running the messages do not pile up (one
  per period) and a restarted worker takes the model from the one waiting;
* a model ``queued`` whose message is lost (above) is sent again. A duplicate is harmless: the
  second task finds the model running or done and does nothing. A model handed over by its
  forward-pass stage to its arrays stage (``crud.HANDED_OVER``) waits in a queue like a queued
  one, and is treated so;
* a model whose forward-pass stage finished once (handed over, or lost in its arrays stage) is
  sent again from its arrays stage only (``crud.resume_stage``): its forward pass and its
  model-needing scores are not redone, the features wait in the cache;
* a job whose models have all ended is closed (its chord callback may have been lost with
  the broker's state);
* the units of an open confirmation (one per (model, rung), :mod:`app.confirmations`) are
  treated like models: a running unit with a stale heartbeat, or a queued one whose message is
  lost, is sent again (it resumes from the previous rung's checkpoint); a confirmation whose
  units have all ended is advanced (the last unit's worker may have died between writing its
  outcome and queuing the next rung).

The API process runs it every ``sweep_interval`` seconds (:func:`start`); several API replicas
may: each re-send is claimed in the database first, once per period (after a restart, once
since the claiming process's previous sweep).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from zoorank_app import metrics
from zoorank_app.broker_contents import Work, model_work, unit_work
from zoorank_app.db import crud
from zoorank_app.db.models import utcnow
from zoorank_app.db.session import session_scope
from zoorank_app.services.runner import finalise_job
from zoorank_app.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    resent_stale: list[tuple[str, str]] = field(default_factory=list)  # (job, model)
    resent_lost: list[tuple[str, str]] = field(default_factory=list)
    resent_restart: list[tuple[str, str]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)  # (job, status)
    resent_units: list[tuple[str, str, int]] = field(default_factory=list)  # (confirmation, model, rung)
    advanced: list[tuple[str, str]] = field(default_factory=list)  # (confirmation, status)
    broker_restarted: bool = False


class Contents(Protocol):
    """What :class:`app.broker_contents.BrokerContents` tells the sweeper."""

    def instance(self) -> str | None: ...

    def waiting(self) -> set[Work] | None: ...


if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zoorank.rank import Stage

    Send = Callable[[str, str, Stage], None]
    SendConfirm = Callable[[str, str, int], None]

# Per broker URL: the broker instance (Redis run_id) this process's last sweep found, and when
# that sweep ended. A message this process sent before then went to that instance.
_instances: dict[str, tuple[str, datetime]] = {}
_instances_lock = threading.Lock()


def _restarted(url: str, instance: str | None) -> datetime | None:
    """When the broker at ``url`` answers as another instance than at the last sweep: the end
    of that sweep (what waits since before then was queued in the old instance); else None."""
    with _instances_lock:
        seen = _instances.get(url)
    if instance is None or seen is None or seen[0] == instance:
        return None
    log.warning("sweep: the broker restarted (run_id %s, was %s): re-sending what it held", instance, seen[0])
    return seen[1]


def _remember(url: str, instance: str | None) -> None:
    if instance is not None:
        with _instances_lock:
            _instances[url] = (instance, utcnow())


@dataclass
class _Broker:
    """The broker as one sweep sees it: each question asked at most once, and only if needed."""

    queue_depth: Callable[[], int | None]
    contents: Contents | None
    restart_before: datetime | None
    _depth: list[int | None] = field(default_factory=list, init=False)
    _waiting: list[set[Work] | None] = field(default_factory=list, init=False)

    def queues_empty(self) -> bool:
        if not self._depth:
            self._depth.append(self.queue_depth())
        return self._depth[0] == 0

    def lost(self, work: Work) -> bool:
        """No message in the broker will run ``work``: none in its queues or reserved by a
        worker; where the broker cannot list its messages, its queues are empty."""
        if not self._waiting:
            self._waiting.append(self.contents.waiting() if self.contents is not None else None)
        listed = self._waiting[0]
        return self.queues_empty() if listed is None else work not in listed

    def due(
        self, work: Work, waiting_since: datetime, period_before: datetime, claim: Callable[[datetime], bool]
    ) -> str | None:
        """Whether work waiting for its message since ``waiting_since`` is sent again, and why:
        ``"restart"`` when that message went to a broker instance that has restarted since,
        ``"lost"`` when it has waited for a period (before ``period_before``) and no message
        will run it. ``claim(before)`` records the re-send unless another sweeper made one
        since ``before``."""
        since = crud.as_utc(waiting_since)
        if self.restart_before is not None and since < self.restart_before and claim(self.restart_before):
            return "restart"
        if since < period_before and self.lost(work) and claim(period_before):
            return "lost"
        return None


def sweep(
    settings: Settings,
    send: Send,
    queue_depth: Callable[[], int | None],
    send_confirm: SendConfirm | None = None,
    contents: Contents | None = None,
) -> SweepReport:
    """One pass over the open jobs (see the module docstring). ``send(job_id, model, stage)``
    queues a model's work from ``stage`` on (``"device"``: all of it; ``"arrays"``: the scores on
    cached arrays only); ``queue_depth()`` is the number of messages waiting in the broker's
    queue, or None when the transport cannot tell; ``contents`` tells a restart of the broker
    and which work its messages carry (without it, or where it cannot tell, a queued model is
    re-sent only while the queues are empty, and never where their depth is unknown)."""
    report = SweepReport()
    stages: dict[tuple[str, str], Stage] = {}
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.stale_after)
    resend_before = now - timedelta(seconds=settings.resend_after)
    instance = contents.instance() if contents is not None else None
    broker = _Broker(queue_depth, contents, _restarted(settings.broker_url, instance))
    report.broker_restarted = broker.restart_before is not None

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
                    work = model_work(job_id, row.model)
                    handed_over = row.status == "running" and row.runner == crud.HANDED_OVER
                    claim = functools.partial(crud.mark_resent, session, row.id)
                    reason: str | None = None
                    if handed_over or row.status == "queued":
                        since = (row.heartbeat_at or created) if handed_over else (row.resent_at or created)
                        reason = broker.due(work, since, resend_before, claim)
                    elif row.status == "running":
                        beat = row.heartbeat_at or row.started_at
                        if beat is not None and crud.as_utc(beat) < stale_before:
                            if row.resent_at is not None and crud.as_utc(row.resent_at) > crud.as_utc(beat):
                                # Re-sent already: it waits like a queued model for that message
                                # (no pile-up while no worker runs).
                                reason = broker.due(work, row.resent_at, stale_before, claim)
                            elif claim(stale_before):
                                reason = "stale"
                    if reason is not None:
                        resent = {"stale": report.resent_stale, "lost": report.resent_lost}
                        resent.get(reason, report.resent_restart).append((job_id, row.model))
                        stages[job_id, row.model] = crud.resume_stage(row)
        if closing:
            report.closed.append((job_id, finalise_job(settings, job_id)))
    for job_id, model in [*report.resent_stale, *report.resent_lost, *report.resent_restart]:
        send(job_id, model, stages[job_id, model])
    if send_confirm is not None:
        from zoorank_app import confirmations

        for job_id, _ in report.closed:  # the callback that would have started it was lost too
            confirmations.start_requested(settings, job_id, send_confirm)
        _sweep_confirmations(settings, send_confirm, broker, report)
    _remember(settings.broker_url, instance)
    metrics.SWEEPER_RESENT.labels("stale heartbeat").inc(len(report.resent_stale))
    metrics.SWEEPER_RESENT.labels("lost message").inc(len(report.resent_lost))
    metrics.SWEEPER_RESENT.labels("broker restarted").inc(len(report.resent_restart))
    metrics.SWEEPER_CLOSED.inc(len(report.closed))
    if report.resent_stale or report.resent_lost or report.resent_restart or report.closed:
        log.warning(
            "sweep: re-sent %d stale, %d lost and %d model tasks of a restarted broker, closed %d jobs",
            len(report.resent_stale),
            len(report.resent_lost),
            len(report.resent_restart),
            len(report.closed),
        )
    return report


def _claim_unit(session: Session, unit_id: int, before: datetime) -> bool:
    """Record a re-send of a confirmation unit unless another sweeper did since ``before``
    (as :func:`crud.mark_resent` for models)."""
    from sqlalchemy import update
    from zoorank_app.db.models import ConfirmUnit

    claimed = session.execute(
        update(ConfirmUnit)
        .where(
            ConfirmUnit.id == unit_id, (ConfirmUnit.resent_at.is_(None)) | (ConfirmUnit.resent_at < before)
        )
        .values(resent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(claimed, "rowcount", 0))


def _sweep_confirmations(settings: Settings, send: SendConfirm, broker: _Broker, report: SweepReport) -> None:
    from sqlalchemy import select
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
                work = unit_work(confirmation_id, unit.model, unit.rung)
                claim = functools.partial(_claim_unit, session, unit.id)
                due: str | None = None
                if unit.status == "running":
                    beat = unit.heartbeat_at or unit.started_at
                    if beat is not None and crud.as_utc(beat) < stale_before:
                        if unit.resent_at is not None and crud.as_utc(unit.resent_at) > crud.as_utc(beat):
                            # re-sent once already: again only if that message is gone
                            due = broker.due(work, unit.resent_at, stale_before, claim)
                        elif claim(stale_before):
                            due = "stale"
                elif unit.status == "queued":
                    waiting = unit.resent_at or unit.created_at
                    due = broker.due(work, waiting, resend_before, claim)
                if due is not None:
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
    contents: Contents | None = None,
) -> threading.Event:
    """Run :func:`sweep` every ``settings.sweep_interval`` seconds in a daemon thread; set the
    returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.sweep_interval):
            try:
                sweep(settings, send, queue_depth, send_confirm, contents)
            except Exception:  # the database may be down: the next pass tries again
                log.exception("sweep failed")

    threading.Thread(target=loop, name="zoorank-sweeper", daemon=True).start()
    return stop
