"""The worker's Celery application: ``celery -A workers.celery_app:celery_app worker``.

Built on first use (not at import) from the settings of the process, with the task modules
added; tasks are ``shared_task``s, so importing them builds nothing either. The process-wide
signal handlers below give each pool process its torch threads and each task its log context.
"""

from __future__ import annotations

import os
from functools import lru_cache

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init
from zoorank_app.celery_client import make_celery
from zoorank_app.settings import get_settings

TASK_MODULES = ("zoorank_workers.tasks",)


@lru_cache
def worker_app() -> Celery:
    settings = get_settings()
    settings.apply_network_policy()
    celery = make_celery(settings, include=TASK_MODULES)
    celery.set_current()
    celery.set_default()
    return celery


def __getattr__(name: str) -> object:
    # `celery -A workers.celery_app:celery_app` resolves this attribute: the app is built then.
    if name == "celery_app":
        return worker_app()
    raise AttributeError(name)


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

    from zoorank_app.logs import configure

    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(str(loglevel or "INFO").upper())
    configure(get_settings().log_format, level=level if isinstance(level, int) else logging.INFO)


_TASK_CONTEXT: dict[str, object] = {}


@task_prerun.connect
def _task_context(task_id: str | None = None, **_: object) -> None:
    from zoorank_app.logs import log_context

    manager = log_context(task_id=task_id)
    manager.__enter__()
    _TASK_CONTEXT[str(task_id)] = manager


@task_postrun.connect
def _task_context_end(task_id: str | None = None, **_: object) -> None:
    manager = _TASK_CONTEXT.pop(str(task_id), None)
    if manager is not None:
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]
