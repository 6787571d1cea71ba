"""The sweeper: the database, not the broker, decides what remains to do."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from zoorank_app import sweeper
from zoorank_app.broker_contents import model_work, unit_work
from zoorank_app.db import crud
from zoorank_app.db.models import JobModel, utcnow
from zoorank_app.db.session import session_scope
from zoorank_app.main import create_app
from zoorank_app.services.runner import run_model
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
    run_model(settings, job_id, MODELS[0])
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
    outcome = run_model(settings, job_id, MODELS[0], task_id="task-c")
    assert outcome == {"model": MODELS[0], "status": "skipped", "reason": "running"}
    _age(settings, job_id, MODELS[0], heartbeat_at=61)
    assert run_model(settings, job_id, MODELS[0], task_id="task-c")["status"] == "succeeded"
    assert run_model(settings, job_id, MODELS[0], task_id="task-d")["reason"] == "done"
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
    run_model(fast, job_id, MODELS[0], task_id="task-a")
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


class FakeBroker:
    """The broker as the sweeper reads it (app.broker_contents): its instance and the work its
    messages carry."""

    def __init__(self, instance: str, waiting: set | None = None) -> None:
        self.run_id = instance
        self.messages: set | None = waiting if waiting is not None else set()

    def instance(self) -> str:
        return self.run_id

    def waiting(self) -> set | None:
        return self.messages


OTHER_WORK = model_work("another-job", "resnet10t")  # keeps the queue busy


@pytest.fixture
def fresh_memory(monkeypatch):
    """No broker instance seen yet by this process's sweeper."""
    monkeypatch.setattr(sweeper, "_instances", {})


def test_a_broker_restart_re_sends_what_was_queued_whatever_else_is_queued(
    settings, queued_job, fresh_memory
):
    _, job_id = queued_job
    sent: list[tuple[str, str, str]] = []
    broker = FakeBroker("run-1", {model_work(job_id, m) for m in MODELS})
    with session_scope(settings.database_url) as session:  # a worker runs the first model
        assert crud.start_model(session, job_id, MODELS[0], runner="task-a") == 1
    report = sweeper.sweep(
        settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5, contents=broker
    )
    assert not report.broker_restarted and sent == []
    first_look = dict(sweeper._instances)
    # Redis restarted without its data: another run_id, and only newer work in its queues.
    broker.run_id, broker.messages = "run-2", {OTHER_WORK}
    report = sweeper.sweep(
        settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5, contents=broker
    )
    # the queued model at once (not after RESEND_AFTER, not only once the queue is empty); the
    # running one with a fresh heartbeat is left to its worker
    assert report.broker_restarted and report.resent_restart == [(job_id, MODELS[1])]
    assert sent == [(job_id, MODELS[1], "device")]
    sweeper.sweep(settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5, contents=broker)
    assert len(sent) == 1  # the same instance again: nothing more
    # Another API process that had last seen the old instance before that re-send: claimed once.
    sweeper._instances.update(first_look)
    report = sweeper.sweep(
        settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 5, contents=broker
    )
    assert report.broker_restarted and len(sent) == 1


def test_a_model_whose_message_is_in_no_queue_is_sent_again_while_other_work_waits(
    settings, queued_job, fresh_memory
):
    _, job_id = queued_job
    sent: list[tuple[str, str, str]] = []
    broker = FakeBroker("run-1", {model_work(job_id, MODELS[0]), OTHER_WORK})  # MODELS[1]'s is gone

    def sweep(listing: set | None = None) -> sweeper.SweepReport:
        broker.messages = listing if listing is not None else broker.messages
        return sweeper.sweep(
            settings, lambda j, m, stage: sent.append((j, m, stage)), lambda: 7, contents=broker
        )

    sweep()
    assert sent == []  # younger than RESEND_AFTER
    with session_scope(settings.database_url) as session:
        crud.get_job(session, job_id).created_at = utcnow() - timedelta(seconds=301)
    report = sweep()
    assert report.resent_lost == [(job_id, MODELS[1])] and sent == [(job_id, MODELS[1], "device")]
    sweep()
    assert len(sent) == 1  # once per RESEND_AFTER, even if that message is in no queue either
    # A transport that cannot list its messages: the queue-depth rule (7 waiting: no re-send).
    _age(settings, job_id, MODELS[1], resent_at=301)
    broker.messages = None
    assert sweep().resent_lost == [] and len(sent) == 1
    # A model re-sent after its worker died waits for that message; gone, it is sent again.
    with session_scope(settings.database_url) as session:
        assert crud.start_model(session, job_id, MODELS[0], runner="task-a") == 1
    _age(settings, job_id, MODELS[0], heartbeat_at=200, started_at=200, resent_at=130)
    sweep({model_work(job_id, MODELS[0]), model_work(job_id, MODELS[1]), OTHER_WORK})
    assert len(sent) == 1
    report = sweep({model_work(job_id, MODELS[1]), OTHER_WORK})
    assert report.resent_lost == [(job_id, MODELS[0])] and sent[-1] == (job_id, MODELS[0], "device")


def test_confirmation_units_lost_or_queued_in_a_restarted_broker_are_sent_again(
    settings, queued_job, fresh_memory
):
    from zoorank_app.db.models import Confirmation, ConfirmUnit

    _, job_id = queued_job
    long_ago = utcnow() - timedelta(seconds=301)
    with session_scope(settings.database_url) as session:
        session.add(Confirmation(id="c1", job_id=job_id, status="running", options={}, plan={}))
        session.flush()
        for model in MODELS:
            session.add(
                ConfirmUnit(confirmation_id="c1", model=model, rung=1, end_epoch=1, created_at=long_ago)
            )
    sent: list[tuple[str, str, int]] = []
    broker = FakeBroker("run-1", {unit_work("c1", MODELS[0], 1), OTHER_WORK})
    report = sweeper.sweep(
        settings,
        lambda j, m, stage: None,
        lambda: 3,
        send_confirm=lambda *unit: sent.append(unit),
        contents=broker,
    )
    assert report.resent_units == sent == [("c1", MODELS[1], 1)]  # its message is in no queue
    broker.run_id, broker.messages = "run-2", {OTHER_WORK}
    report = sweeper.sweep(
        settings,
        lambda j, m, stage: None,
        lambda: 3,
        send_confirm=lambda *unit: sent.append(unit),
        contents=broker,
    )
    # both were queued in the old instance (the re-send too)
    assert sorted(report.resent_units) == [("c1", m, 1) for m in MODELS]
