"""A Celery application configured from the :class:`app.settings.Settings` it is given.

The API sends tasks by name through one (``app.dispatch``); the worker (``workers.celery_app``)
builds its own from the same function and adds the task modules. Nothing is built at import.

Embedded default: kombu's filesystem transport under ``./var/broker`` (no server) and a SQLite
result backend; production: Redis or RabbitMQ. Tasks are acknowledged late and rejected
(re-queued) when their worker process is lost, so a killed worker does not lose a job.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from zoorank_app.settings import Settings
from zoorank_app.task_names import CONFIRM_UNIT, EXTRACT_MODEL, FINALISE_JOB, RANK_MODEL, VALIDATE_JOB

# Queues by resource: forward passes (and the model-needing scores, and training) on `gpu`;
# what reads cached arrays only (most scores, persistence, bootstrap, closing a job) on `cpu`.
# A worker consumes either or both (`zoorank worker --queues`, ZOORANK_WORKER_QUEUES).
GPU_QUEUE, CPU_QUEUE = "gpu", "cpu"
QUEUES = (GPU_QUEUE, CPU_QUEUE)
ROUTES = {
    EXTRACT_MODEL: GPU_QUEUE,
    VALIDATE_JOB: GPU_QUEUE,
    CONFIRM_UNIT: GPU_QUEUE,
    RANK_MODEL: CPU_QUEUE,
    FINALISE_JOB: CPU_QUEUE,
}


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """A Celery app for ``settings`` (the filesystem broker's folders are made here, where
    they are first needed)."""
    settings.ensure_dirs()
    celery = Celery(
        "zoorank",
        broker=settings.broker_url,
        backend=settings.result_backend,
        include=list(include),
        set_as_current=False,
    )
    transport_options: dict[str, object] = {}
    if settings.broker_url.startswith("filesystem://"):
        folder = str(settings.broker_folder)
        transport_options = {
            "data_folder_in": f"{folder}/in",
            "data_folder_out": f"{folder}/in",
            "processed_folder": f"{folder}/processed",
            "control_folder": f"{folder}/control",
            "store_processed": False,
        }
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        # Longer than any task can run (its hard time limit): an unacked task is redelivered
        # only after this, so never while it still runs elsewhere.
        transport_options = {"visibility_timeout": settings.visibility_timeout}
    celery.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_concurrency=settings.worker_concurrency,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_extended=False,
        result_expires=24 * 3600,
        task_default_queue=CPU_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        worker_hijack_root_logger=False,
    )
    return celery
