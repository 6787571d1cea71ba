"""The confirmation stage with real `celery worker` processes: a whole worker killed -9 in the
middle of a rung (the sweeper re-sends the unit, another worker resumes it from the previous
rung's checkpoint, every (model, rung) ends with one row), and a cancel in the middle of a rung
(the unit stops between two steps and writes nothing: no outcome, no checkpoint)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from zoorank_app import sweeper
from zoorank_app.confirmations import checkpoints_root
from zoorank_app.dispatch import CeleryDispatcher
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests.service_harness import celery_worker, kill_whole_worker, wait_for_job
from zoorank.confirm.units import checkpoint_dir

pytestmark = pytest.mark.integration

MODELS = ["resnet10t@random", "test_resnet@random"]
JOB = {
    "dataset": "builtin:digits",
    "models": MODELS,
    "scores": ["nce"],
    "options": {"samples_per_class": 10, "input_size": 32, "tap_images_per_class": 0},
}
# rungs end at epochs 1 and 4 (eta 4): the last rung trains the pick for three epochs of 1,000
# rows, long enough to be caught in the middle.
CONFIRM = {"top_k": 2, "eta": 4, "settings": {"epochs": 4, "train_per_class": 100, "val_per_class": 20}}


def _with(settings: Settings, **changes: object) -> Settings:
    return Settings(**{**settings.model_dump(), **changes})


def _wait_confirmation(client: TestClient, job_id: str, until, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    confirmation: dict = {}
    seen = []
    while time.monotonic() < deadline:
        confirmation = client.get(f"/v1/jobs/{job_id}/confirm").json()
        seen.append(
            [(u["model"], u["rung"], u["status"], u["epochs_done"]) for u in confirmation.get("units", [])]
        )
        if until(confirmation):
            return confirmation
        time.sleep(0.2)
    changes = [x for i, x in enumerate(seen) if i == 0 or x != seen[i - 1]]
    raise AssertionError(f"confirmation of {job_id} never got there: {confirmation}; states seen: {changes}")


def _mid_last_rung(confirmation: dict) -> bool:
    """A unit of the last rung is running and has finished one of its three epochs."""
    return any(
        u["rung"] == 2 and u["status"] == "running" and u["epochs_done"] >= 1
        for u in confirmation.get("units", [])
    )


def _ranked(client: TestClient, tmp_path: Path, settings: Settings, name: str) -> str:
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    with celery_worker(settings, log=tmp_path / f"{name}.log"):
        job = wait_for_job(client, job_id, timeout=300)
    assert job["status"] == "succeeded", job
    return job_id


# Once, on the production stack; the embedded stack runs the cancel test below.
@pytest.mark.parametrize("settings", ["postgres-redis"], indirect=True)
def test_worker_killed_mid_rung_resumes_from_the_previous_rung(settings, tmp_path):
    fast = _with(settings, stale_after=6.0)
    client = TestClient(create_app(fast))
    dispatcher = CeleryDispatcher(fast)
    job_id = _ranked(client, tmp_path, fast, "ranking")
    accepted = client.post(f"/v1/jobs/{job_id}/confirm", json=CONFIRM)
    assert accepted.status_code == 202, accepted.text
    with celery_worker(fast, log=tmp_path / "first.log") as worker:
        caught = _wait_confirmation(client, job_id, _mid_last_rung)
        kill_whole_worker(worker.pid)
        worker.wait()
    victim = next(u["model"] for u in caught["units"] if u["rung"] == 2)
    folder = checkpoint_dir(checkpoints_root(fast, caught["id"]), victim)
    assert (folder / "rung-1.pt").exists() and not (folder / "rung-2.pt").exists()
    killed_at = time.monotonic()
    stop = sweeper.start(
        _with(fast, sweep_interval=1.0),
        dispatcher.send_model,
        dispatcher.queue_depth,
        send_confirm=dispatcher.send_confirm_unit,
    )
    try:
        with celery_worker(fast, log=tmp_path / "second.log"):
            done = _wait_confirmation(
                client, job_id, lambda c: c["status"] in ("succeeded", "failed", "cancelled")
            )
    finally:
        stop.set()
    log = (tmp_path / "second.log").read_text()[-3000:]
    assert done["status"] == "succeeded", (done, log)
    units = {(u["model"], u["rung"]): u for u in done["units"]}
    # one row per (model, rung): rung 1 for both models, then the better one alone
    assert sorted(units) == sorted([(m, 1) for m in MODELS] + [(victim, 2)])
    assert units[victim, 2]["attempts"] == 2 and units[victim, 2]["status"] == "succeeded"
    assert all(u["attempts"] == 1 for key, u in units.items() if key != (victim, 2))  # nothing redone
    answer = done["result"]
    assert answer["pick"] == victim
    pick = next(row for row in answer["models"] if row["model"] == victim)
    assert [h["epoch"] for h in pick["curve"]] == [1, 2, 3, 4] and pick["epochs"] == 4
    assert not checkpoints_root(fast, done["id"]).exists()  # cleaned up once answered
    # bounded: stale_after + a sweep + a model load and two epochs
    assert time.monotonic() - killed_at < fast.stale_after + 2 + 180


def test_a_confirmation_asked_with_the_job_starts_and_a_cancel_mid_rung_writes_nothing(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])
    client = TestClient(create_app(settings))
    # asked for with the ranking: the worker's finalise_job task starts it
    job_id = client.post("/v1/jobs", json={**JOB, "confirm": CONFIRM}).json()["id"]
    with celery_worker(settings, log=tmp_path / "worker.log"):
        caught = _wait_confirmation(client, job_id, _mid_last_rung)
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
        cancelled = client.post(f"/v1/jobs/{job_id}/confirm/cancel")
        assert cancelled.status_code == 200, cancelled.text
        done = _wait_confirmation(
            client, job_id, lambda c: all(u["status"] != "running" for u in c["units"]), timeout=60
        )
    victim = next(u for u in done["units"] if u["rung"] == 2)
    assert done["status"] == "cancelled" and done["result"] is None
    assert victim["status"] == "cancelled" and victim["seconds"] is None
    assert victim["attempts"] == 1
    assert not checkpoints_root(settings, caught["id"]).exists()
