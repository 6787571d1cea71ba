"""How the API queues work: by task *name* (the API never imports task code)."""

from __future__ import annotations

import contextlib

from celery import chord, group

from app.settings import Settings


class CeleryDispatcher:
    """Sends ranking chords to the broker of ``settings``."""

    def __init__(self, settings: Settings) -> None:
        from workers.celery_app import make_celery

        self.celery = make_celery(settings)

    def dispatch(self, job_id: str, models: list[str]) -> list[str]:
        """A chord: one ``zoorank.rank_model`` per model, then ``zoorank.finalise_job``."""
        members = group(
            self.celery.signature("zoorank.rank_model", args=(job_id, m), immutable=True) for m in models
        )
        callback = self.celery.signature("zoorank.finalise_job", args=(job_id,))
        result = chord(members, app=self.celery)(callback)
        ids = [child.id for child in (result.parent.results if result.parent is not None else [])]
        return [*ids, result.id]

    def dispatch_validation(self, job_id: str) -> list[str]:
        """One ``zoorank.validate_job`` task: training is sequential on a worker anyway."""
        return [self.celery.send_task("zoorank.validate_job", args=(job_id,)).id]

    def revoke(self, task_ids: list[str]) -> None:
        """Best effort: queued tasks also check the job's status before doing anything."""
        # Transports without broadcast (filesystem) cannot revoke; the status check covers it.
        with contextlib.suppress(Exception):
            self.celery.control.revoke(task_ids)

    def ping_broker(self) -> None:
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
