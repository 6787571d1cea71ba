"""How the API queues work: by task *name* (the API never imports task code)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from celery import chain, chord, group
from celery.canvas import Signature
from zoorank_app.broker_contents import BrokerContents
from zoorank_app.celery_client import QUEUES
from zoorank_app.settings import Settings
from zoorank_app.task_names import CONFIRM_UNIT, EXTRACT_MODEL, FINALISE_JOB, RANK_MODEL, VALIDATE_JOB

if TYPE_CHECKING:
    from zoorank.rank import Stage

log = logging.getLogger(__name__)


class CeleryDispatcher:
    """Sends ranking chords to the broker of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        from zoorank_app.celery_client import make_celery

        self.settings = settings
        self.celery = make_celery(settings)
        self.contents = BrokerContents(self.celery, settings)  # what the sweeper reads
        # Sending a chord of chains takes a producer from kombu's pool (10) for the chord and
        # another for each chain, while holding the first: many requests dispatching at once
        # took every producer and waited for one forever. One send at a time cannot.
        self._sending = threading.Lock()

    def _model_work(self, job_id: str, model: str) -> Signature:
        """One model's work: its forward pass on the ``gpu`` queue, then its scores on the
        cached arrays on the ``cpu`` queue (routes in :mod:`app.celery_client`)."""
        return chain(
            self.celery.signature(EXTRACT_MODEL, args=(job_id, model), immutable=True),
            self.celery.signature(RANK_MODEL, args=(job_id, model), immutable=True),
        )

    def dispatch(self, job_id: str, models: list[str]) -> list[str]:
        """A chord: each model's work, then ``zoorank.finalise_job``; returns every task id."""
        members = group(self._model_work(job_id, m) for m in models)
        callback = self.celery.signature(FINALISE_JOB, args=(job_id,))
        with self._sending:
            result = chord(members, app=self.celery)(callback)
        ids = []
        for tail in result.parent.results if result.parent is not None else []:
            ids += [tail.id, *([tail.parent.id] if tail.parent is not None else [])]
        return [*ids, result.id]

    def send_model(self, job_id: str, model: str, stage: Stage = "device") -> None:
        """One model's work again, outside any chord (the sweeper closes the job): all of it, or
        from its ``"arrays"`` stage on (a model handed over whose cpu message was lost)."""
        work = (
            self.celery.signature(RANK_MODEL, args=(job_id, model), immutable=True)
            if stage == "arrays"
            else self._model_work(job_id, model)
        )
        with self._sending:
            work.apply_async()

    def queue_depth(self) -> int | None:
        """Messages waiting in the broker's queues; None where the transport cannot tell."""
        url = self.settings.broker_url
        if url.startswith("filesystem://"):
            return None  # messages are files: nothing is lost with a restart
        try:
            with self.celery.connection_for_write() as connection:
                # Redis deletes an empty list, so a passive declare would fail there.
                passive = not url.startswith(("redis://", "rediss://"))
                channel = connection.default_channel
                return sum(
                    int(channel.queue_declare(queue=queue, passive=passive).message_count) for queue in QUEUES
                )
        except Exception as exc:
            log.warning("queue depth unknown: %s", exc)
            return None

    def dispatch_validation(self, job_id: str) -> list[str]:
        """One ``zoorank.validate_job`` task: training is sequential on a worker anyway."""
        return [self.celery.send_task(VALIDATE_JOB, args=(job_id,)).id]

    def send_confirm_unit(self, confirmation_id: str, model: str, rung: int) -> None:
        """One (model, rung) of a confirmation, on the ``gpu`` queue."""
        with self._sending:
            self.celery.send_task(CONFIRM_UNIT, args=(confirmation_id, model, rung))

    def revoke(self, task_ids: list[str]) -> None:
        """Best effort: queued tasks also check the job's status before doing anything."""
        # Transports without broadcast (filesystem) cannot revoke; the status check covers it.
        with contextlib.suppress(Exception):
            self.celery.control.revoke(task_ids)

    def ping_broker(self) -> None:
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
