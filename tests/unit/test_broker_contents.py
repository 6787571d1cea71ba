"""What the sweeper reads of the broker without consuming: Redis' run_id across a restart, and
the work of the messages waiting in its queues or reserved by a worker (unacked); the message
files of the embedded filesystem broker."""

from __future__ import annotations

import json

import pytest
from zoorank_app.broker_contents import BrokerContents, message_work, model_work, unit_work
from zoorank_app.dispatch import CeleryDispatcher
from zoorank_app.settings import Settings

from tests.service_harness import free_port, redis_server

JOB, MODEL = "0123456789abcdef0123456789abcdef", "mobilenetv2_100@random"


@pytest.fixture
def redis_broker(tmp_path):
    """An own Redis (keeping nothing on disk) and a dispatcher on it; yields (dispatcher, restart)."""
    port = free_port()
    server = [redis_server(port, tmp_path)]

    def restart() -> None:
        server[0].kill()
        server[0].wait()
        server[0] = redis_server(port, tmp_path)

    settings = Settings(var_dir=tmp_path / "var", broker_url=f"redis://127.0.0.1:{port}/0")
    try:
        yield CeleryDispatcher(settings), restart
    finally:
        server[0].kill()
        server[0].wait()


def test_redis_run_id_changes_when_it_restarts(redis_broker):
    dispatcher, restart = redis_broker
    first = dispatcher.contents.instance()
    assert first and dispatcher.contents.instance() == first
    restart()
    assert dispatcher.contents.instance() not in (None, first)


def test_redis_messages_waiting_or_reserved_are_listed_by_their_work(redis_broker):
    dispatcher, _ = redis_broker
    contents = dispatcher.contents
    assert contents.waiting() == set()
    dispatcher.send_model(JOB, MODEL, "device")  # gpu queue
    dispatcher.send_model(JOB, "resnet10t", "arrays")  # cpu queue
    dispatcher.send_confirm_unit("c1", MODEL, 2)
    assert contents.waiting() == {
        model_work(JOB, MODEL),
        model_work(JOB, "resnet10t"),
        unit_work("c1", MODEL, 2),
    }
    with dispatcher.celery.connection_for_read() as connection:
        queue = connection.SimpleQueue("cpu", no_ack=False)
        message = queue.get(timeout=2)  # a worker reserves it: out of the list, into unacked
        assert connection.default_channel.client.llen("cpu") == 0
        assert model_work(JOB, "resnet10t") in contents.waiting()
        message.ack()
        assert model_work(JOB, "resnet10t") not in contents.waiting()
        # a message lost from its queue (deleted): its work is in no queue
        client = connection.default_channel.client
        for raw in client.lrange("gpu", 0, -1):
            if b"zoorank.extract_model" in raw:
                client.lrem("gpu", 1, raw)
    assert contents.waiting() == {unit_work("c1", MODEL, 2)}


@pytest.mark.slow  # the connection attempt times out
def test_a_redis_that_does_not_answer_is_unknown_not_empty(tmp_path):
    down = Settings(var_dir=tmp_path / "var", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    contents = BrokerContents(CeleryDispatcher(down).celery, down)
    assert contents.instance() is None and contents.waiting() is None


def test_the_filesystem_broker_lists_its_message_files(tmp_path):
    settings = Settings(var_dir=tmp_path / "var")  # the embedded default
    dispatcher = CeleryDispatcher(settings)
    assert dispatcher.contents.instance() is None  # its files outlive a restart
    dispatcher.send_model(JOB, MODEL, "device")
    dispatcher.send_confirm_unit("c1", MODEL, 1)
    both = {model_work(JOB, MODEL), unit_work("c1", MODEL, 1)}
    assert dispatcher.contents.waiting() == both
    with dispatcher.celery.connection_for_read() as connection:
        message = connection.SimpleQueue("gpu").get(timeout=2)  # a worker takes one: its file goes
        message.ack()
    taken = (
        model_work(JOB, MODEL)
        if message.headers["task"] == "zoorank.extract_model"
        else unit_work("c1", MODEL, 1)
    )
    assert dispatcher.contents.waiting() == both - {taken}


def test_a_broker_whose_queues_cannot_be_read_is_unknown(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", broker_url="amqp://guest:guest@127.0.0.1:1//")
    contents = CeleryDispatcher(settings).contents
    assert contents.instance() is None and contents.waiting() is None


@pytest.mark.slow
def test_a_message_deleted_from_a_busy_redis_queue_is_sent_again_after_resend_after(redis_broker, tmp_path):
    """No worker: two jobs' messages wait in Redis; one model's message is deleted. The sweeper
    (real dispatcher, real Redis) sends that model again once it has waited RESEND_AFTER, while
    the other messages still wait; the others are not sent again."""
    import time

    from fastapi.testclient import TestClient
    from zoorank_app import sweeper
    from zoorank_app.main import create_app

    dispatcher, _ = redis_broker
    settings = Settings(**{**dispatcher.settings.model_dump(), "resend_after": 2.0, "sweep_interval": 0.5})
    client = TestClient(create_app(settings))
    body = {"dataset": "builtin:digits", "scores": ["logme"], "options": {"samples_per_class": 8}}
    first = client.post("/v1/jobs", json={**body, "models": [MODEL, "resnet10t@random"]}).json()["id"]
    second = client.post("/v1/jobs", json={**body, "models": ["test_resnet@random"]}).json()["id"]
    with dispatcher.celery.connection_for_read() as connection:
        redis = connection.default_channel.client
        (lost,) = [raw for raw in redis.lrange("gpu", 0, -1) if b"resnet10t@random" in raw]
        redis.lrem("gpu", 1, lost)
        deleted_at = time.monotonic()
        resent: list[tuple[str, str, float, int | None]] = []

        def send(job_id: str, model: str, stage) -> None:
            resent.append((job_id, model, time.monotonic() - deleted_at, dispatcher.queue_depth()))
            dispatcher.send_model(job_id, model, stage)

        stop = sweeper.start(settings, send, dispatcher.queue_depth, contents=dispatcher.contents)
        try:
            while not resent and time.monotonic() < deleted_at + 15:
                time.sleep(0.1)
            time.sleep(3 * settings.sweep_interval)  # nothing else follows
        finally:
            stop.set()
    assert [(job, model) for job, model, _, _ in resent] == [(first, "resnet10t@random")], resent
    seconds, depth = resent[0][2:]
    print(f"deletion to re-send: {seconds:.1f} s (RESEND_AFTER 2 s), {depth} messages queued then")
    assert seconds < settings.resend_after + 3 and depth == 2  # the other two models' messages
    assert model_work(second, "test_resnet@random") in dispatcher.contents.waiting()


@pytest.mark.slow
def test_the_api_s_own_sweeper_re_sends_what_a_restarted_redis_lost(redis_broker):
    """The API's sweeper (create_app's) is given the broker's contents: no worker, a job's
    messages in Redis, Redis restarted keeping nothing: its models are sent again within a few
    sweeps, long before RESEND_AFTER (300 s)."""
    import time

    from fastapi.testclient import TestClient
    from sqlalchemy import select
    from zoorank_app.db.models import JobModel
    from zoorank_app.db.session import session_scope
    from zoorank_app.main import create_app

    dispatcher, restart = redis_broker
    settings = Settings(**{**dispatcher.settings.model_dump(), "sweep_interval": 0.3})
    body = {
        "dataset": "builtin:digits",
        "models": [MODEL],
        "scores": ["logme"],
        "options": {"samples_per_class": 8},
    }
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        time.sleep(1.0)  # a sweep sees the broker before the restart
        restart()
        assert model_work(job_id, MODEL) not in dispatcher.contents.waiting()
        deadline = time.monotonic() + 10
        while model_work(job_id, MODEL) not in dispatcher.contents.waiting() and time.monotonic() < deadline:
            time.sleep(0.1)
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(JobModel).where(JobModel.job_id == job_id)).one()
    assert model_work(job_id, MODEL) in dispatcher.contents.waiting() and row.resent_at is not None


@pytest.mark.slow
def test_a_message_file_deleted_from_the_embedded_broker_is_sent_again(tmp_path):
    """The filesystem broker's equivalent: a model whose message file is gone is sent again
    after RESEND_AFTER while another job's file still waits; the waiting one is not."""
    import time

    from fastapi.testclient import TestClient
    from zoorank_app import sweeper
    from zoorank_app.main import create_app

    settings = Settings(var_dir=tmp_path / "var", resend_after=0.5, sweep_interval=0)
    dispatcher = CeleryDispatcher(settings)
    client = TestClient(create_app(settings))
    body = {"dataset": "builtin:digits", "scores": ["logme"], "options": {"samples_per_class": 8}}
    first = client.post("/v1/jobs", json={**body, "models": [MODEL]}).json()["id"]
    second = client.post("/v1/jobs", json={**body, "models": ["resnet10t@random"]}).json()["id"]
    headers = {
        path: json.loads(path.read_bytes())["headers"]
        for path in (settings.broker_folder / "in").glob("*.msg")
    }
    (lost,) = [
        path for path, h in headers.items() if h["task"] == "zoorank.extract_model" and first in h["argsrepr"]
    ]
    lost.unlink()
    time.sleep(settings.resend_after)
    sent: list[tuple[str, str, str]] = []
    report = sweeper.sweep(
        settings, lambda *work: sent.append(work), dispatcher.queue_depth, contents=dispatcher.contents
    )
    assert sent == [(first, MODEL, "device")] and report.resent_lost == [(first, MODEL)]
    assert model_work(second, "resnet10t@random") in dispatcher.contents.waiting()


def test_messages_of_other_tasks_or_unreadable_carry_no_work():
    import base64

    def message(task: str, args: object, encoding: str = "base64") -> dict:
        body = json.dumps([args, {}, {}])
        return {
            "headers": {"task": task},
            "body": base64.b64encode(body.encode()).decode() if encoding == "base64" else body,
            "properties": {"body_encoding": encoding},
        }

    assert message_work(message("zoorank.rank_model", [JOB, MODEL])) == model_work(JOB, MODEL)
    assert message_work(message("zoorank.confirm_unit", ["c1", MODEL, 3], "utf-8")) == unit_work(
        "c1", MODEL, 3
    )
    assert message_work(message("zoorank.finalise_job", [JOB])) is None  # not a model's work
    assert message_work(message("zoorank.rank_model", [[JOB], MODEL])) is None  # not our arguments
    assert message_work({"headers": {"task": "zoorank.rank_model"}, "body": "%%%"}) is None
    assert message_work({"body": "e30="}) is None
