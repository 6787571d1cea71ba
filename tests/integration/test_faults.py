"""Faults as they happen, with real `celery worker` processes: a whole worker killed -9 (parent
and pool), the broker restarted without its data. The database is the record of the work and
the sweeper (run by the API) re-sends what was lost; every (job, model, score) row is written
exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
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
    signal_whole_worker,
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


def test_redis_restarted_under_load_the_lost_models_are_sent_again_at_once(tmp_path):
    """The operator's report: PostgreSQL + Redis, one worker, Redis restarted mid-job keeping
    nothing, a second job queued behind the first. A third job, sent right after the restart,
    keeps the queue busy: the lost models (the first job's queued one, the second job's) are
    sent again at the sweep after the restart, while that queue is not empty, instead of
    waiting for RESEND_AFTER and an empty queue; the running model is left to its worker; all
    three jobs succeed, each result written once."""
    port = free_port()
    redis = redis_server(port, tmp_path)
    running_model, lost_model = "mobilenetv2_100@random", "test_resnet@random"
    with postgres_schema() as database_url:
        settings = Settings(
            var_dir=tmp_path / "var",
            data_roots=[tmp_path / "data"],
            database_url=database_url,
            broker_url=f"redis://127.0.0.1:{port}/0",
            stale_after=30.0,  # the worker is paused below for a few seconds: not a dead one
            resend_after=120.0,  # far beyond the bound below: only the restart can explain a re-send
            sweep_interval=1.0,
        )
        client = TestClient(create_app(settings))
        dispatcher = CeleryDispatcher(settings)
        resent: dict[tuple[str, str], tuple[float, int | None]] = {}  # -> (when, queue depth then)
        # Holds the sweeper's look at the broker while Redis restarts and the third job comes, so
        # that the sweep after the restart finds the queue busy (as under steady load).
        gate = threading.Event()
        gate.set()

        class GatedContents:
            def instance(self) -> str | None:
                gate.wait()
                return dispatcher.contents.instance()

            def waiting(self) -> set | None:
                return dispatcher.contents.waiting()

        def send(job_id: str, model: str, stage) -> None:
            resent.setdefault((job_id, model), (time.monotonic(), dispatcher.queue_depth()))
            dispatcher.send_model(job_id, model, stage)

        def submit(models: list[str], options: dict = OPTIONS) -> str:
            body = {"dataset": "builtin:digits", "models": models, "scores": ["logme"], "options": options}
            return client.post("/v1/jobs", json=body).json()["id"]

        stop = sweeper.start(settings, send, dispatcher.queue_depth, contents=GatedContents())
        try:
            with celery_worker(settings, log=tmp_path / "worker.log") as worker:
                # every digit at 64 px: the first model runs for seconds, the other waits behind it
                every_digit = {"samples_per_class": 50, "input_size": 64, "tap_images_per_class": 0}
                first = submit([running_model, lost_model], every_digit)
                wait_running(client, first)
                # The worker paused (its model mid-pass) keeps the queue from draining meanwhile.
                signal_whole_worker(worker.pid, signal.SIGSTOP)
                second = submit(["resnet10t@random"])  # queued behind
                time.sleep(2 * settings.sweep_interval)  # a sweep sees the broker before the restart
                gate.clear()
                redis.kill()
                redis.wait()
                redis = redis_server(port, tmp_path)
                restarted_at = time.monotonic()
                third = submit(["mobilenetv2_100@random"])  # the queue is busy again
                gate.set()
                deadline = restarted_at + 30
                while (first, lost_model) not in resent and time.monotonic() < deadline:
                    time.sleep(0.2)
                signal_whole_worker(worker.pid, signal.SIGCONT)
                jobs = [wait_for_job(client, job_id, timeout=300) for job_id in (first, second, third)]
        finally:
            gate.set()
            stop.set()
            redis.kill()
            redis.wait()
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert (first, lost_model) in resent, (resent, log)
    when, depth = resent[first, lost_model]
    print(f"restart to re-send: {when - restarted_at:.1f} s, {depth} messages queued then")
    # within a sweep or two of the restart, while the third job's message waited in the queue
    assert when - restarted_at < 10 and depth, (when - restarted_at, depth)
    assert (second, "resnet10t@random") in resent
    assert (first, running_model) not in resent  # running, its heartbeat fresh
    for job in jobs:
        assert job["status"] == "succeeded", (job, log)
        one_row_per_result(job)
