"""The Celery application, configured from :class:`app.settings.Settings`.

Embedded default: kombu's filesystem transport under ``./var/broker`` (no server) and a SQLite
result backend; production: Redis. Tasks are acknowledged late and rejected (re-queued) when
their worker process is lost, so a killed worker does not lose a job.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init

from app.settings import Settings, get_settings


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    settings.ensure_dirs()
    celery = Celery(
        "zoorank",
        broker=settings.broker_url,
        backend=settings.result_backend,
        include=["workers.tasks"],
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
        task_default_queue="zoorank",
        worker_hijack_root_logger=False,
    )
    return celery


@worker_process_init.connect
def _torch_threads(**_: object) -> None:
    # A forked pool process gets its own intra-op thread pool sized to the machine.
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, get_settings().worker_concurrency)))


@setup_logging.connect
def _logging(loglevel: object = None, **_: object) -> None:
    # Our format (ZOORANK_LOG_FORMAT) instead of Celery's, at the worker's --loglevel; Celery's
    # own records go through it.
    import logging

    from app.logs import configure

    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(str(loglevel or "INFO").upper())
    configure(get_settings().log_format, level=level if isinstance(level, int) else logging.INFO)


_TASK_CONTEXT: dict[str, object] = {}


@task_prerun.connect
def _task_context(task_id: str | None = None, **_: object) -> None:
    from app.logs import log_context

    manager = log_context(task_id=task_id)
    manager.__enter__()
    _TASK_CONTEXT[str(task_id)] = manager


@task_postrun.connect
def _task_context_end(task_id: str | None = None, **_: object) -> None:
    manager = _TASK_CONTEXT.pop(str(task_id), None)
    if manager is not None:
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]


celery_app = make_celery()
