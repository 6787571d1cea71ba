"""Settings for the integration tests: the embedded defaults, and PostgreSQL + Redis."""

from __future__ import annotations

import uuid

import pytest
from zoorank_app.celery_client import QUEUES
from zoorank_app.settings import Settings

from tests.service_harness import postgres_schema, reachable


@pytest.fixture(params=["embedded", "postgres-redis"])
def settings(request, tmp_path):
    if request.param == "embedded":
        yield Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])
        return
    if not reachable(5432) or not reachable(6379):
        pytest.skip(
            "PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not running; "
            "start them as the README says"
        )
    redis_db = 1 + int(uuid.uuid4().int % 14)
    with postgres_schema() as database_url:  # an own schema per test: parallel runs never collide
        yield Settings(
            var_dir=tmp_path / "var",
            data_roots=[tmp_path / "data"],
            database_url=database_url,
            broker_url=f"redis://127.0.0.1:6379/{redis_db}",
        )
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()


@pytest.fixture
def rabbitmq_settings(tmp_path):
    """PostgreSQL (an own schema) with RabbitMQ, Celery's reference broker, as the broker."""
    if not reachable(5432) or not reachable(5672):
        pytest.skip("PostgreSQL (127.0.0.1:5432) or RabbitMQ (127.0.0.1:5672) is not running")
    from kombu import Connection

    broker = "amqp://guest:guest@127.0.0.1:5672//"

    def purge() -> None:  # the queue is shared by every run on this broker
        with Connection(broker) as connection:
            channel = connection.default_channel
            for queue in QUEUES:
                channel.queue_declare(queue=queue, durable=True, auto_delete=False)
                channel.queue_purge(queue)

    purge()
    with postgres_schema() as database_url:
        yield Settings(
            var_dir=tmp_path / "var",
            data_roots=[tmp_path / "data"],
            database_url=database_url,
            broker_url=broker,
        )
        purge()
