"""The sweeper: the database, not the broker, decides what remains to do."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from zoorank_app import services, sweeper
from zoorank_app.db import crud
from zoorank_app.db.models import JobModel, utcnow
from zoorank_app.db.session import session_scope
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

OPTIONS = {"samples_per_class": 8, "input_size": 32, "tap_images_per_class": 0}
MODELS = ["mobilenetv2_100", "mobilenetv2_100@random"]


@pytest.fixture
def settings(tmp_path):
    return Settings(
        var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], stale_after=60, resend_after=300
    )


@pytest.fixture
def queued_job(settings):
    """A job whose messages went nowhere (the dispatch loses them)."""
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    body = {"dataset": "builtin:digits", "models": MODELS, "scores": ["logme"], "options": OPTIONS}
    return client, client.post("/v1/jobs", json=body).json()["id"]


def _age(settings, job_id, model, **columns_ago):
    """Set timestamps of a model row that many seconds in the past."""
    values = {column: utcnow() - timedelta(seconds=ago) for column, ago in columns_ago.items()}
    with session_scope(settings.database_url) as session:
        session.execute(
            update(JobModel).where(JobModel.job_id == job_id, JobModel.model == model).values(**values)
        )


def _set_status(settings, job_id, model, status):
    with session_scope(settings.database_url) as session:
        crud.set_model_status(session, job_id, model, status)


def test_a_running_model_without_heartbeat_is_sent_again_once_per_period(settings, queued_job):
    _, job_id = queued_job
    sent: list[tuple[str, str, str]] = []
    with session_scope(settings.database_url) as session:
        assert crud.start_model(session, job_id, MODELS[0], runner="task-a") == 1
    report = sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5)
    assert report.resent_stale == [] and sent == []  # heartbeat fresh: left alone
    _age(settings, job_id, MODELS[0], heartbeat_at=61, started_at=61)
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5)
    assert sent == [(job_id, MODELS[0], "device")]  # its work again, from the forward pass
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5)
    assert len(sent) == 1  # not again within the period
    # No worker takes it for periods on end: its message waits in the queue, nothing piles up.
    _age(settings, job_id, MODELS[0], heartbeat_at=200, started_at=200, resent_at=130)
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 1)
    assert len(sent) == 1
    # ... unless that message is in no queue (lost with the broker): then once more per period.
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 0)
    assert len(sent) == 2
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 0)
    assert len(sent) == 2
    # The re-sent task (another id) takes over the stale model; attempts go on counting.
    with session_scope(settings.database_url) as session:
        assert crud.start_model(session, job_id, MODELS[0], runner="task-b") == 2
    # Claimed again and then silent: a new stale run, re-sent whatever the queue holds.
    _age(settings, job_id, MODELS[0], heartbeat_at=61, started_at=61, resent_at=130)
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5)
    assert len(sent) == 3


def test_a_queued_model_is_sent_again_only_when_its_message_is_in_no_queue(settings, queued_job):
    _, job_id = queued_job
    sent: list[tuple[str, str, str]] = []
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 0)
    assert sent == []  # younger than resend_after
    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id)
        job.created_at = utcnow() - timedelta(seconds=301)
    for depth in (3, None):  # messages waiting, or a transport that cannot tell
        sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda depth=depth: depth)
        assert sent == []
    report = sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 0)
    assert sorted(sent) == sorted((job_id, m, "device") for m in MODELS) and len(report.resent_lost) == 2
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 0)
    assert len(sent) == 2


def test_a_job_whose_models_all_ended_is_closed(settings, queued_job):
    client, job_id = queued_job
    services.run_model(settings, job_id, MODELS[0])
    report = sweeper.sweep(settings, lambda j, m, stage: None, lambda: 5)
    assert report.closed == []  # the second model is still queued
    _set_status(settings, job_id, MODELS[1], "failed")
    report = sweeper.sweep(settings, lambda j, m, stage: None, lambda: 5)
    assert report.closed == [(job_id, "partial")]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "partial" and job["ranking"]["aggregate"][0]["model"] == MODELS[0]


def test_a_second_task_for_a_model_does_nothing_while_the_first_runs_or_after_it_ended(settings, queued_job):
    _, job_id = queued_job
    with session_scope(settings.database_url) as session:
        assert crud.start_model(session, job_id, MODELS[0], runner="task-a") == 1
        assert crud.start_model(session, job_id, MODELS[0], runner="task-b") == "running"
        # the same task delivered again after its worker died takes over at once
        assert crud.start_model(session, job_id, MODELS[0], runner="task-a") == 2
    outcome = services.run_model(settings, job_id, MODELS[0], task_id="task-c")
    assert outcome == {"model": MODELS[0], "status": "skipped", "reason": "running"}
    _age(settings, job_id, MODELS[0], heartbeat_at=61)
    assert services.run_model(settings, job_id, MODELS[0], task_id="task-c")["status"] == "succeeded"
    assert services.run_model(settings, job_id, MODELS[0], task_id="task-d")["reason"] == "done"
    with session_scope(settings.database_url) as session:
        rows = crud.job_results(session, job_id)
    assert [(r.model, r.score) for r in rows] == [(MODELS[0], "logme")]  # written once


def test_the_heartbeat_is_written_while_a_model_runs(settings, queued_job, monkeypatch):
    import time

    import zoorank.rank

    fast = Settings(**{**settings.model_dump(), "stale_after": 0.4})
    _, job_id = queued_job
    beats: list[object] = []
    real = zoorank.rank.run_score

    def slow_score(name, *args, **kwargs):
        time.sleep(0.5)  # several heartbeat periods (stale_after / 4 = 0.1 s)
        with session_scope(fast.database_url) as session:
            beats.append(crud.job_models(session, job_id)[0].heartbeat_at)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(zoorank.rank, "run_score", slow_score)
    before = utcnow()
    services.run_model(fast, job_id, MODELS[0], task_id="task-a")
    assert crud.as_utc(beats[0]) > before + timedelta(seconds=0.3)


def test_a_model_handed_over_between_stages_waits_like_a_queued_one(settings, queued_job):
    # The forward-pass stage (gpu queue) hands the model over to its arrays stage (cpu queue):
    # the claim passes without a new attempt; a busy cpu queue is not a lost worker.
    _, job_id = queued_job
    sent: list[tuple[str, str, str]] = []
    with session_scope(settings.database_url) as session:
        assert crud.start_model(session, job_id, MODELS[0], runner="extract-1") == 1
        crud.hand_over(
            session, job_id, MODELS[0], feature_seconds=1.0, images_per_second=9.0, from_cache=False
        )
    _age(settings, job_id, MODELS[0], heartbeat_at=200, started_at=200)  # stale by STALE_AFTER
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 4)
    assert sent == []  # its message waits in the cpu queue
    _age(settings, job_id, MODELS[0], heartbeat_at=301)
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 4)
    assert sent == []  # still messages waiting: not lost
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 0)
    # in no queue for RESEND_AFTER: lost, sent again; only its arrays stage (its forward pass
    # and the model-needing scores are done, the features wait in the cache)
    assert sent == [(job_id, MODELS[0], "arrays")]
    with session_scope(settings.database_url) as session:
        # the arrays stage takes the model over at once, the attempt not counted again ...
        assert crud.start_model(session, job_id, MODELS[0], runner="rank-1", takeover=True) == 1
        # ... a duplicate of it waits for its heartbeat; a model still queued is claimed as usual
        assert crud.start_model(session, job_id, MODELS[0], runner="rank-2", takeover=True) == "running"
        assert crud.start_model(session, job_id, MODELS[1], runner="rank-3", takeover=True) == 1


def test_a_re_sent_model_goes_to_the_queue_of_the_stage_it_resumes(settings):
    from zoorank_app.dispatch import CeleryDispatcher

    dispatcher = CeleryDispatcher(settings)  # the embedded filesystem broker under VAR_DIR

    def waiting(queue: str) -> list[str]:
        with dispatcher.celery.connection_for_read() as connection:
            simple = connection.SimpleQueue(queue)
            names = []
            while True:
                try:
                    message = simple.get(timeout=0.2)
                except simple.Empty:
                    return names
                names.append(message.headers["task"])
                message.ack()

    dispatcher.send_model("job-1", MODELS[0], "arrays")
    assert (waiting("gpu"), waiting("cpu")) == ([], ["zoorank.rank_model"])
    dispatcher.send_model("job-1", MODELS[0], "device")  # the chain: its forward pass first
    assert (waiting("gpu"), waiting("cpu")) == (["zoorank.extract_model"], [])


def test_a_model_lost_in_its_arrays_stage_is_sent_again_from_that_stage(settings, queued_job):
    _, job_id = queued_job
    sent: list[tuple[str, str, str]] = []
    with session_scope(settings.database_url) as session:
        assert crud.start_model(session, job_id, MODELS[0], runner="extract-1") == 1
        crud.hand_over(
            session, job_id, MODELS[0], feature_seconds=1.0, images_per_second=9.0, from_cache=False
        )
        assert crud.start_model(session, job_id, MODELS[0], runner="rank-1", takeover=True) == 1
        # the other model's worker died in its forward pass: nothing of it is done
        assert crud.start_model(session, job_id, MODELS[1], runner="extract-2") == 1
    _age(settings, job_id, MODELS[0], heartbeat_at=61)  # the cpu worker died mid-scores
    _age(settings, job_id, MODELS[1], heartbeat_at=61)
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5)
    assert sorted(sent) == [(job_id, MODELS[0], "arrays"), (job_id, MODELS[1], "device")]
    with session_scope(settings.database_url) as session:  # the re-sent stage takes over, a new attempt
        assert crud.start_model(session, job_id, MODELS[0], runner="rank-2", takeover=True) == 2
