"""What the sweeper reads of the broker without consuming: Redis' run_id across a restart, and
the work of the messages waiting in its queues or reserved by a worker (unacked); the message
files of the embedded filesystem broker."""

from __future__ import annotations

import pytest
from zoorank_app.broker_contents import BrokerContents, model_work, unit_work
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
