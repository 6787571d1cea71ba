"""How the API queues work: by task *name* (the API never imports task code)."""

from __future__ import annotations

from celery import chord, group

from workers.celery_app import celery_app


def dispatch_ranking(job_id: str, models: list[str]) -> list[str]:
    """A chord: one ``zoorank.rank_model`` per model, then ``zoorank.finalise_job``."""
    members = group(celery_app.signature("zoorank.rank_model", args=(job_id, m), immutable=True)
                    for m in models)  # fmt: skip
    callback = celery_app.signature("zoorank.finalise_job", args=(job_id,))
    result = chord(members, app=celery_app)(callback)
    ids = [child.id for child in (result.parent.results if result.parent is not None else [])]
    return [*ids, result.id]


def revoke(task_ids: list[str]) -> None:
    """Best effort: queued tasks also check the job's status before doing anything."""
    try:
        celery_app.control.revoke(task_ids)
    except Exception:  # transports without broadcast (filesystem) cannot revoke
        pass
