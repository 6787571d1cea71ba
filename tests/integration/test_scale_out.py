"""Scale-out (issue 13 §6). Queues by resource: a worker on the ``gpu`` queue makes the forward
passes, one on the ``cpu`` queue scores the cached arrays without a forward pass of its own.
Several hosts, as far as one machine allows: each worker runs in its own network namespace and
reaches Redis and PostgreSQL over a virtual link (tests/netns.py); one job is spread over two
hosts; one host is cut off mid-model (its link down, as in a crash or a partition); the
sweeper re-sends its model and the other host finishes the job, every (job, model, score) row
written once."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from fastapi.testclient import TestClient
from zoorank_app import sweeper
from zoorank_app.dispatch import CeleryDispatcher
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests import netns
from tests.service_harness import (
    LONG_JOB,
    celery_worker,
    free_port,
    one_row_per_result,
    postgres_schema,
    redis_server,
    wait_for_job,
)

pytestmark = pytest.mark.integration

MODELS = ["mobilenetv2_100@random", "tf_efficientnet_lite0@random", "resnet10t@random"]
# Long enough (a few seconds a model) to cut a host in the middle of one.
JOB = {**LONG_JOB, "models": MODELS, "options": {"samples_per_class": 100, "input_size": 64}}


def _started(path: os.PathLike[str], stage: str = "device") -> set[str]:
    """The models whose ``stage`` a worker's (JSON) log says it started."""
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return set()
    return {m for m in MODELS for line in lines if f"model started ({stage} stage" in line and m in line}


def test_forward_passes_and_array_scores_run_on_their_own_queues(settings, tmp_path):
    client = TestClient(create_app(settings))
    body = {
        "dataset": "builtin:digits",
        "models": MODELS[:2],
        "scores": ["logme", "leep", "betti_slope", "translation_sensitivity"],
        "options": {"samples_per_class": 10, "input_size": 32, "tap_images_per_class": 2},
    }
    logs = {queue: tmp_path / f"{queue}.log" for queue in ("gpu", "cpu")}
    with (
        celery_worker(settings, log=logs["gpu"], name="gpu", queues=["gpu"]),
        celery_worker(settings, log=logs["cpu"], name="cpu", queues=["cpu"]),
    ):
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"], timeout=300)
    gpu, cpu = logs["gpu"].read_text(), logs["cpu"].read_text()
    assert job["status"] == "succeeded", (job, gpu[-2000:], cpu[-2000:])
    one_row_per_result(job)
    assert all(p["attempts"] == 1 and p["from_cache"] is False for p in job["progress"])  # one pass each
    assert "zoorank.extract_model" in gpu and "zoorank.rank_model" not in gpu
    assert "zoorank.rank_model" in cpu and "zoorank.extract_model" not in cpu
    assert _started(logs["gpu"]) == _started(logs["cpu"], "arrays") == set(MODELS[:2])
    assert "not in the cache" not in cpu  # the cpu worker made no forward pass


@pytest.fixture
def two_hosts():
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with netns.hosts(2) as made:
        yield made


def test_one_job_over_two_hosts_survives_one_host_cut_off(two_hosts, tmp_path):
    h1, h2 = two_hosts
    port = free_port()
    redis = redis_server(port, tmp_path, bind=("127.0.0.1", h1.gateway, h2.gateway))
    forwarders = [netns.Forwarder(h.gateway, 5432) for h in two_hosts]
    try:
        with postgres_schema() as database_url:
            settings = Settings(
                var_dir=tmp_path / "var",
                data_roots=[tmp_path / "data"],
                database_url=database_url,
                broker_url=f"redis://127.0.0.1:{port}/0",
                stale_after=6.0,
                sweep_interval=1.0,
                log_format="json",
            )
            _run(settings, h1, h2, port, tmp_path)
    finally:
        for forwarder in forwarders:
            forwarder.close()
        redis.kill()
        redis.wait()


def _run(settings: Settings, h1: netns.Host, h2: netns.Host, port: int, tmp_path) -> None:
    client = TestClient(create_app(settings))
    dispatcher = CeleryDispatcher(settings)

    def seen_from(host: netns.Host) -> dict[str, str]:  # the addresses as that host reaches them
        broker = f"redis://{host.gateway}:{port}/0"
        return {
            "ZOORANK_DATABASE_URL": settings.database_url.replace("127.0.0.1", host.gateway),
            "ZOORANK_BROKER_URL": broker,
            "ZOORANK_RESULT_BACKEND": broker,
        }

    logs = {h.name: tmp_path / f"{h.name}.log" for h in (h1, h2)}
    stop = sweeper.start(settings, dispatcher.send_model, dispatcher.queue_depth)
    try:
        with (
            celery_worker(settings, log=logs["h1"], name="h1", env=seen_from(h1), wrap=h1.command) as first,
            celery_worker(settings, log=logs["h2"], name="h2", env=seen_from(h2), wrap=h2.command),
        ):
            job_id = client.post("/v1/jobs", json=JOB).json()["id"]
            deadline = time.monotonic() + 240
            while not (_started(logs["h1"]) and _started(logs["h2"])):
                assert time.monotonic() < deadline, "the job was not spread over both hosts"
                time.sleep(0.3)
            (cut_model,) = _started(logs["h1"])
            h1.cut()  # mid-model: its heartbeats stop reaching the database
            cut_at = time.monotonic()
            try:
                job = wait_for_job(client, job_id, timeout=420)
            finally:
                os.kill(first.pid, signal.SIGKILL)  # the cut host cannot shut down cleanly
                h1.restore()
            elapsed = time.monotonic() - cut_at
    finally:
        stop.set()
    assert job["status"] == "succeeded", (job, logs["h2"].read_text()[-3000:])
    one_row_per_result(job)
    progress = {p["model"]: p for p in job["progress"]}
    assert progress[cut_model]["attempts"] == 2  # once on h1 (cut), once more on h2
    assert cut_model in _started(logs["h2"])
    # Bound: the stale heartbeat (6 s) + a sweep + h2 finishing its own models and this one.
    assert elapsed < 400, elapsed


def test_many_requests_dispatching_at_once_all_get_through(settings):
    # Each job is a chord of chains (one per model); sent from 40 request threads at once they
    # once took every producer of kombu's pool and the API hung.
    dispatcher = CeleryDispatcher(settings)
    done: list[int] = []

    def send(i: int) -> None:
        dispatcher.dispatch(f"load-{i}", MODELS)
        done.append(i)

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(40)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert len(done) == 40
