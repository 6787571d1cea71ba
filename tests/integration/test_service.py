"""The whole path with a real `celery worker` process, no eager mode: on the embedded defaults
(SQLite + kombu filesystem broker) and on the machine's PostgreSQL + Redis."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from zoorank_app.main import create_app

from tests.service_harness import LONG_JOB, celery_worker, wait_for_job
from zoorank.zoo import create_model, parse_model_ref

pytestmark = pytest.mark.integration

MODELS = ["mobilenetv2_100", "mobilenetv2_100@random"]
OPTIONS = {"samples_per_class": 10, "input_size": 32, "tap_images_per_class": 2}


def test_job_end_to_end_then_cache_hit(settings, tmp_path):
    client = TestClient(create_app(settings))
    with celery_worker(settings, log=tmp_path / "worker.log"):
        response = client.post(
            "/v1/jobs",
            json={
                "dataset": "builtin:digits",
                "models": MODELS,
                "scores": ["logme", "linear_probe"],
                "options": OPTIONS,
            },
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert response.headers["location"] == f"/v1/jobs/{job_id}"
        job = wait_for_job(client, job_id)
        assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text()[-3000:])
        assert {(r["model"], r["score"]) for r in job["results"]} == {
            (m, s) for m in MODELS for s in ("logme", "linear_probe")
        }
        assert all(r["value"] is not None and r["error"] is None for r in job["results"])
        assert all(
            p["status"] == "succeeded" and p["images_done"] == p["images_total"] == 100
            for p in job["progress"]
        )
        logme = {r["model"]: r["value"] for r in job["results"] if r["score"] == "logme"}
        assert job["ranking"]["by_score"]["logme"] == sorted(logme, key=logme.get, reverse=True)
        assert len(job["sample_ids"]) == 100

        board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": "logme"}).json()
        values = [row["value"] for row in board["data"]]
        assert [row["model"] for row in board["data"]] == job["ranking"]["by_score"]["logme"]
        assert values == sorted(values, reverse=True)

        # The same data again: every model's features come from the cache, no forward pass.
        second = client.post(
            "/v1/jobs",
            json={
                "dataset": "builtin:digits",
                "models": MODELS,
                "scores": ["logme"],
                "options": OPTIONS,
            },
        ).json()
        again = wait_for_job(client, second["id"])
        assert again["status"] == "succeeded"
        assert all(p["from_cache"] for p in again["progress"])
        first_logme = {r["model"]: r["value"] for r in job["results"] if r["score"] == "logme"}
        assert {r["model"]: r["value"] for r in again["results"]} == pytest.approx(first_logme)


def _nan_weights(folder) -> str:
    """resnet10t weights with a NaN in the stem: the model yields non-finite features."""
    state = {
        k: v
        for k, v in create_model(parse_model_ref("resnet10t@random")).state_dict().items()
        if v.is_floating_point()
    }
    state["conv1.0.weight"][0, 0, 0, 0] = float("nan")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "broken.safetensors"
    save_file(state, str(path))
    return str(path)


def test_failing_model_ends_partial_and_says_why(settings, tmp_path):
    client = TestClient(create_app(settings))
    weights = _nan_weights(settings.data_roots[0])
    created = client.post(
        "/v1/models",
        json={"name": "broken-r10", "architecture": "resnet10t", "weights": f"file:{weights}"},
    )
    assert created.status_code == 201, created.text
    with celery_worker(settings, log=tmp_path / "worker.log"):
        job_id = client.post(
            "/v1/jobs",
            json={
                "dataset": "builtin:digits",
                "models": ["mobilenetv2_100@random", "broken-r10"],
                "scores": ["logme"],
                "options": OPTIONS,
            },
        ).json()["id"]
        job = wait_for_job(client, job_id)
    assert job["status"] == "partial"
    assert "broken-r10" in job["error"] and "non-finite" in job["error"]
    progress = {p["model"]: p for p in job["progress"]}
    assert progress["broken-r10"]["status"] == "failed"
    # the failed model is ranked last, with its reason, and takes no part in the combination
    rows = job["ranking"]["aggregate"]
    assert [row["model"] for row in rows] == ["mobilenetv2_100@random", "broken-r10"]
    assert rows[1]["value"] is None and "non-finite" in rows[1]["failed"] and rows[1]["p_top1"] == 0.0


def test_killed_worker_does_not_lose_the_job(settings, tmp_path):
    """SIGKILL the pool process mid-task: acks_late + reject_on_worker_lost re-queue it, the
    upserts keep one row per (job, model, score), and the job still succeeds."""
    client = TestClient(create_app(settings))
    with celery_worker(settings, log=tmp_path / "worker.log") as worker:
        job_id = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
        wait_for_job(client, job_id, until=("running", "succeeded"), timeout=120)
        children = _children(worker.pid)
        assert children, "the prefork pool process was not found"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        job = wait_for_job(client, job_id, timeout=300)
    assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text()[-3000:])
    assert job["progress"][0]["attempts"] >= 2
    assert len(job["results"]) == 1


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as handle:
                found = [int(p) for p in handle.read().split()]
        except OSError:
            found = []
        if found:
            return found
        time.sleep(0.1)
    return []


def test_cancel_stops_queued_work(settings, tmp_path):
    client = TestClient(create_app(settings))
    # No worker yet: the job stays queued; cancelling it means its tasks do nothing later.
    job_id = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": MODELS,
            "scores": ["logme"],
            "options": OPTIONS,
        },
    ).json()["id"]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    with celery_worker(settings, log=tmp_path / "worker.log"):
        time.sleep(8)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["results"] == []
    assert all(p["status"] == "cancelled" for p in job["progress"])
    assert np.all([p["images_done"] == 0 for p in job["progress"]])


def test_cancel_mid_model_stops_the_running_task(settings, tmp_path):
    """The issue's case: cancel while a long model is mid-pass. The task stops at its next
    batch, writes no result, and its model stays cancelled (before: it ran on, flipped to
    succeeded and reached the leaderboard)."""
    client = TestClient(create_app(settings))
    log = tmp_path / "worker.log"
    with celery_worker(settings, log=log):
        job_id = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            progress = client.get(f"/v1/jobs/{job_id}").json()["progress"][0]
            if progress["images_done"] > 0:
                break
            time.sleep(0.2)
        assert 0 < progress["images_done"] < progress["images_total"], progress
        cancelled_at = time.monotonic()
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
        while time.monotonic() < cancelled_at + 60 and "'status': 'cancelled'" not in log.read_text():
            time.sleep(0.2)
        stopped_after = time.monotonic() - cancelled_at
        time.sleep(2)
    text = log.read_text()
    assert "'status': 'cancelled'" in text and "the job was cancelled" in text, text[-3000:]
    assert stopped_after < 15, stopped_after  # stopped at a batch, not at the end of the pass
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["results"] == []
    assert job["progress"][0]["status"] == "cancelled"
    assert job["progress"][0]["images_done"] < job["progress"][0]["images_total"]
    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": "logme"})
    assert board.json()["data"] == []


def test_validation_job_on_a_real_worker(settings, tmp_path):
    client = TestClient(create_app(settings))
    body = {
        "dataset": "builtin:digits",
        "models": MODELS,
        "scores": ["logme"],
        "mode": "linear",
        "seeds": [0],
        "settings": {"train_per_class": 12, "val_per_class": 4, "test_per_class": 10, "input_size": 32},
    }
    with celery_worker(settings, log=tmp_path / "worker.log"):
        response = client.post("/v1/validations", json=body)
        assert response.status_code == 202, response.text
        job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "succeeded", (job, (tmp_path / "worker.log").read_text()[-3000:])
    assert job["kind"] == "validation"
    assert {g["model"] for g in job["ranking"]["ground_truth"]} == set(MODELS)
    assert [a["score"] for a in job["ranking"]["agreement"]] == ["logme"]
