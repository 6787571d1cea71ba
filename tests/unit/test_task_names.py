"""One list of task names (app/task_names.py): what the workers register is what the API routes
and sends, so a renamed task cannot leave a message on a queue that no worker reads."""

from __future__ import annotations

from zoorank_app.celery_client import QUEUES, ROUTES
from zoorank_app.task_names import TASK_NAMES
from zoorank_workers.celery_app import worker_app


def test_every_task_the_workers_register_is_named_by_the_constants_and_routed_to_a_queue():
    celery = worker_app()
    celery.loader.import_default_modules()  # the task modules, as a worker imports them at start
    registered = {name for name in celery.tasks if not name.startswith("celery.")}
    assert registered == set(TASK_NAMES)
    assert set(ROUTES) == registered
    assert set(ROUTES.values()) <= set(QUEUES)
