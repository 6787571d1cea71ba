"""Faults as they happen, with real `celery worker` processes: a whole worker killed -9 (parent
and pool), the broker restarted without its data. The database is the record of the work and
the sweeper (run by the API) re-sends what was lost; every (job, model, score) row is written
exactly once."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from fastapi.testclient import TestClient
from zoorank_app import sweeper
from zoorank_app.dispatch import CeleryDispatcher
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests.service_harness import (
    LONG_JOB,
    RABBITMQ_SERVER,
    celery_worker,
    free_port,
    kill_group,
    kill_whole_worker,
    one_row_per_result,
    postgres_schema,
    rabbitmq_server,
    reachable,
    redis_server,
    wait_for_job,
    wait_running,
)

pytestmark = pytest.mark.integration

OPTIONS = {"samples_per_class": 10, "input_size": 32, "tap_images_per_class": 0}


def _with(settings: Settings, **changes: object) -> Settings:
    return Settings(**{**settings.model_dump(), **changes})


def test_whole_worker_killed_then_another_worker_finishes_the_job(settings, tmp_path):
    fast = _with(settings, stale_after=6.0)
    client = TestClient(create_app(fast))
    dispatcher = CeleryDispatcher(fast)
    with celery_worker(fast, log=tmp_path / "first.log") as worker:
        job_id = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
        wait_running(client, job_id)
        kill_whole_worker(worker.pid)
        worker.wait()
    killed_at = time.monotonic()
    stop = sweeper.start(_with(fast, sweep_interval=1.0), dispatcher.send_model, dispatcher.queue_depth)
    try:
        with celery_worker(fast, log=tmp_path / "second.log"):
            job = wait_for_job(client, job_id, timeout=300)
    finally:
        stop.set()
    elapsed = time.monotonic() - killed_at
    log = (tmp_path / "second.log").read_text()[-3000:]
    assert job["status"] == "succeeded", (job, log)
    assert job["progress"][0]["attempts"] == 2
    one_row_per_result(job)
    # Bound: stale_after + a sweep + the model's own pass, not the broker's visibility timeout.
    assert elapsed < fast.stale_after + 2 + 240, elapsed


def test_redis_restarted_mid_job_the_job_still_completes(tmp_path):
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = redis_server(port, tmp_path)
    settings = Settings(
        var_dir=tmp_path / "var",
        data_roots=[tmp_path / "data"],
        broker_url=f"redis://127.0.0.1:{port}/0",
        stale_after=6.0,
        resend_after=3.0,
        sweep_interval=1.0,
    )
    client = TestClient(create_app(settings))
    dispatcher = CeleryDispatcher(settings)
    models = [
        "mobilenetv2_100",
        "mobilenetv2_100@random",
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite0@random",
    ]
    body = {"dataset": "builtin:digits", "models": models, "scores": ["logme"], "options": OPTIONS}
    stop = None
    try:
        with celery_worker(settings, log=tmp_path / "worker.log"):
            job_id = client.post("/v1/jobs", json=body).json()["id"]
            wait_running(client, job_id)
            # Redis keeps nothing on disk: the queued messages and the chord's state are gone.
            redis.kill()
            redis.wait()
            redis = redis_server(port, tmp_path)
            restarted_at = time.monotonic()
            stop = sweeper.start(settings, dispatcher.send_model, dispatcher.queue_depth)
            job = wait_for_job(client, job_id, timeout=300)
            elapsed = time.monotonic() - restarted_at
    finally:
        if stop is not None:
            stop.set()
        redis.kill()
        redis.wait()
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert job["status"] == "succeeded", (job, log)
    one_row_per_result(job)
    assert elapsed < 180, elapsed


def test_rabbitmq_broker_end_to_end(rabbitmq_settings, tmp_path):
    """amqp:// works as the broker: a job over two models succeeds, the sweeper can read the
    queue's depth, and nothing is left queued."""
    settings = _with(rabbitmq_settings, log_format="json")
    client = TestClient(create_app(settings))
    models = ["mobilenetv2_100", "mobilenetv2_100@random"]
    with celery_worker(settings, log=tmp_path / "worker.log"):
        job_id = client.post(
            "/v1/jobs",
            json={"dataset": "builtin:digits", "models": models, "scores": ["logme"], "options": OPTIONS},
        ).json()["id"]
        job = wait_for_job(client, job_id, timeout=240)
    assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text()[-3000:])
    one_row_per_result(job)
    assert CeleryDispatcher(settings).queue_depth() == 0
    # structured logs: one JSON object per line, the model task's records carry its ids
    records = [
        json.loads(line)
        for line in (tmp_path / "worker.log").read_text().splitlines()
        if line.startswith("{")
    ]
    tagged = [
        r for r in records if r.get("job_id") == job_id and r.get("task_id") and r.get("model") in models
    ]
    assert tagged and all({"time", "level", "logger", "message"} <= set(r) for r in records)


@pytest.mark.parametrize("keeps_data", [True, False], ids=["keeps-its-data", "loses-its-data"])
def test_rabbitmq_restarted_mid_job_the_job_still_completes(keeps_data, tmp_path):
    """RabbitMQ killed -9 while a model runs, then started again: with its data (durable queues
    and persistent messages come back; unacknowledged ones are delivered again) or without
    (a new node: the sweeper re-sends from the database). Either way the job completes and
    every (model, score) is written once."""
    if not RABBITMQ_SERVER.exists() or not reachable(5432):
        pytest.skip("rabbitmq-server (Debian package rabbitmq-server) or PostgreSQL is missing")
    port = free_port()
    broker = rabbitmq_server(port, tmp_path / "rabbitmq")
    with postgres_schema() as database_url:
        settings = Settings(
            var_dir=tmp_path / "var",
            data_roots=[tmp_path / "data"],
            database_url=database_url,
            broker_url=f"amqp://guest:guest@127.0.0.1:{port}//",
            stale_after=6.0,
            resend_after=3.0,
            sweep_interval=1.0,
        )
        client = TestClient(create_app(settings))
        dispatcher = CeleryDispatcher(settings)
        models = ["mobilenetv2_100", "mobilenetv2_100@random", "tf_efficientnet_lite0", "resnet10t@random"]
        body = {"dataset": "builtin:digits", "models": models, "scores": ["logme"], "options": OPTIONS}
        stop = None
        try:
            with celery_worker(settings, log=tmp_path / "worker.log"):
                job_id = client.post("/v1/jobs", json=body).json()["id"]
                wait_running(client, job_id)
                kill_group(broker)
                broker = rabbitmq_server(port, tmp_path / ("rabbitmq" if keeps_data else "rabbitmq-new"))
                restarted_at = time.monotonic()
                stop = sweeper.start(settings, dispatcher.send_model, dispatcher.queue_depth)
                job = wait_for_job(client, job_id, timeout=300)
                elapsed = time.monotonic() - restarted_at
        finally:
            if stop is not None:
                stop.set()
            kill_group(broker)
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert job["status"] == "succeeded", (job, log)
    one_row_per_result(job)
    assert elapsed < 180, elapsed
