"""The Celery task wrappers: database outages retried, the chord callback never starved."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError
from zoorank_app.services import runner
from zoorank_workers import tasks
from zoorank_workers.celery_app import worker_app


def _outage() -> OperationalError:
    return OperationalError("UPDATE", {}, Exception("could not connect to server"))


@pytest.fixture
def eager(monkeypatch):
    celery = worker_app()
    before = celery.conf.task_always_eager
    celery.conf.task_always_eager = True
    monkeypatch.setattr(tasks, "_pause", lambda task: 0)
    yield
    celery.conf.task_always_eager = before


def test_a_model_task_retries_while_the_database_is_down_then_succeeds(eager, monkeypatch):
    calls = []

    def flaky(settings, job_id, model, task_id=None, stage="all"):
        calls.append(model)
        if len(calls) <= 2:
            raise _outage()
        return {"model": model, "status": "succeeded"}

    monkeypatch.setattr(runner, "run_model", flaky)
    result = tasks.rank_model.apply(args=("job", "m")).get()
    assert result == {"model": "m", "status": "succeeded"} and len(calls) == 3


def test_a_model_task_gives_up_with_a_result_so_the_chord_still_closes_the_job(eager, monkeypatch):
    calls = []

    def down(settings, job_id, model, task_id=None, stage="all"):
        calls.append(model)
        raise _outage()

    monkeypatch.setattr(runner, "run_model", down)
    result = tasks.rank_model.apply(args=("job", "m")).get()
    assert result["status"] == "failed" and "database unreachable" in result["error"]
    assert len(calls) == 1 + tasks.DATABASE_RETRIES
