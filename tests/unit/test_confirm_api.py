"""The confirmation stage over HTTP, in-process: workers run inline (a unit's task runs inside
the call that queues it). Bad input of every kind, the 409s, a dry run that starts nothing, a
diverging model that leaves with its reason while the others go on, cancel."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from zoorank_app import confirmations
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests.service_harness import inline_client
from zoorank.groundtruth import training

MODELS = ["resnet10t@random", "test_resnet@random", "mobilenetv2_100@random"]
JOB = {"dataset": "builtin:digits", "models": MODELS, "scores": ["nce"], "options": {"samples_per_class": 10}}
SMALL = {"epochs": 2, "train_per_class": 5, "val_per_class": 3, "batch_size": 16}


_client = inline_client


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished ranking job of three models, and the settings it lives in."""
    tmp = tmp_path_factory.mktemp("confirm")
    settings = Settings(var_dir=tmp / "var", data_roots=[tmp / "data"], sweep_interval=0)
    client = _client(settings)
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    return settings, job_id


def _problem(response, status: int, field: str | None = None, contains: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    if field is not None:
        assert body.get("field") == field or any(
            field in str(e.get("loc")) for e in body.get("errors", [])
        ), body
    assert contains in body["detail"], body
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": "many"}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"budget": -1}, "budget"),
        ({"budget": "lots"}, "budget"),
        ({"budget_unit": "hours"}, "budget_unit"),
        ({"loss": "mse"}, "loss"),
        ({"alpha": 0}, "alpha"),
        ({"eta": 1}, "eta"),
        ({"seed": -3}, "seed"),
        ({"settings": {"epochs": 0}}, "settings"),
        ({"settings": {"lr": "fast"}}, "settings"),
        ({"settings": {"colour": 1}}, "settings"),
        ({"settings": []}, "settings"),
        ({"dry_run": "maybe"}, "dry_run"),
        ({"topk": 3}, "topk"),
    ],
)
def test_malformed_fields_are_422_naming_the_field(finished, body, field):
    settings, job_id = finished
    _problem(_client(settings).post(f"/v1/jobs/{job_id}/confirm", json=body), 422, field)


def test_budget_below_one_epoch_of_the_shortlist_is_422_naming_the_minimum(finished):
    settings, job_id = finished
    # 10 classes x (5 fine-tune + 3 validation) rows = 80 image passes per model and epoch; 3 models.
    body = _problem(
        _client(settings).post(f"/v1/jobs/{job_id}/confirm", json={"budget": 200, "settings": SMALL}),
        422,
        "budget",
    )
    assert "minimum of 240 images" in body["detail"], body


def test_a_class_too_small_for_the_validation_split_is_422_naming_it(finished):
    settings, job_id = finished
    # digits has 174 to 183 rows per class: 180 validation rows + 1 leave some classes short
    body = _problem(
        _client(settings).post(f"/v1/jobs/{job_id}/confirm", json={"settings": {"val_per_class": 180}}),
        422,
        "dataset",
    )
    assert "class " in body["detail"] and "lower settings.val_per_class" in body["detail"], body


def test_dry_run_states_the_plan_and_starts_nothing(finished):
    settings, job_id = finished
    client = _client(settings)
    plan = client.post(f"/v1/jobs/{job_id}/confirm", json={"top_k": 10, "dry_run": True, "settings": SMALL})
    assert plan.status_code == 200, plan.text
    body = plan.json()["plan"]
    # top_k clamped to the 3 models ranked, and said so
    assert body["top_k"] == 3 and "more than the 3 models ranked" in body["top_k_note"]
    assert body["schedule"] == [1, 2]
    # rungs: 3 models x 1 epoch, then 2 x 1 = 5 epochs of 80 passes
    assert body["estimated_cost"] == 5 * 80 and body["minimum_budget"] == 3 * 80
    assert body["split"] == {"fine_tune_rows": 50, "validation_rows": 30}
    _problem(client.get(f"/v1/jobs/{job_id}/confirm"), 404)


def test_unfinished_or_unknown_jobs_cannot_be_confirmed(tmp_path, finished):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)
    client = _client(settings, run_jobs=False)
    queued = client.post("/v1/jobs", json=JOB).json()["id"]
    _problem(client.post(f"/v1/jobs/{queued}/confirm", json={}), 409, "job", "queued")
    _problem(client.post("/v1/jobs/nope/confirm", json={}), 404)
    _problem(client.get("/v1/jobs/nope/confirm"), 404)


def test_one_open_confirmation_per_job_and_cancel(finished):
    settings, job_id = finished
    idle = _client(settings, run_units=False)  # units are queued, never run
    first = idle.post(f"/v1/jobs/{job_id}/confirm", json={"settings": SMALL})
    assert first.status_code == 202, first.text
    assert first.headers["location"] == f"/v1/jobs/{job_id}/confirm"
    assert [u["rung"] for u in first.json()["units"]] == [1, 1, 1]
    _problem(idle.post(f"/v1/jobs/{job_id}/confirm", json={}), 409, "job", "in progress")
    cancelled = idle.post(f"/v1/jobs/{job_id}/confirm/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert {u["status"] for u in cancelled.json()["units"]} == {"cancelled"}
    # a late task for a cancelled unit does nothing
    late = confirmations.run_unit(settings, first.json()["id"], MODELS[0], 1, lambda *a: None)
    assert late["status"] == "cancelled"
    _problem(idle.post(f"/v1/jobs/{job_id}/confirm/cancel"), 409, "job")


def test_a_diverging_model_leaves_with_its_reason_and_the_others_go_on(finished, monkeypatch):
    settings, job_id = finished
    train_epoch = training.FineTuneRun.train_epoch

    def diverge_for_one(run, should_stop=None):
        if type(run.model).__name__ == "EfficientNet":  # timm builds mobilenetv2_100 as one
            raise training.Diverged("training diverged (loss nan) at epoch 1; lower the learning rate")
        return train_epoch(run, should_stop)

    monkeypatch.setattr(training.FineTuneRun, "train_epoch", diverge_for_one)
    client = _client(settings)
    response = client.post(f"/v1/jobs/{job_id}/confirm", json={"settings": SMALL})
    assert response.status_code == 202, response.text
    confirmation = client.get(f"/v1/jobs/{job_id}/confirm").json()
    assert confirmation["status"] == "succeeded", confirmation
    answer = confirmation["result"]
    rows = {row["model"]: row for row in answer["models"]}
    assert rows["mobilenetv2_100@random"]["reason"].startswith("diverged: training diverged (loss nan)")
    assert rows["mobilenetv2_100@random"]["val_accuracy"] is None
    assert answer["pick"] in ("resnet10t@random", "test_resnet@random")
    assert rows[answer["pick"]]["epochs"] == 2 and rows[answer["pick"]]["reason"] == "kept"
    assert [h["epoch"] for h in rows[answer["pick"]]["curve"]] == [1, 2]
    # the job's JSON carries the confirmation too, and each (model, rung) ran once
    assert client.get(f"/v1/jobs/{job_id}").json()["confirmation"]["id"] == confirmation["id"]
    keys = [(u["model"], u["rung"]) for u in confirmation["units"]]
    assert len(keys) == len(set(keys)) == 3 + 1
    assert all(u["attempts"] == 1 for u in confirmation["units"])
    assert confirmation["progress"]["fraction"] == pytest.approx(4 / 5)


def test_a_validation_job_cannot_be_confirmed(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)

    def dispatch_validation(job_id: str) -> list[str]:
        return []

    client = TestClient(
        create_app(
            settings,
            dispatch=lambda j, m: [],
            revoke=lambda ids: None,
            dispatch_validation=dispatch_validation,
        )
    )
    job = client.post(
        "/v1/validations", json={"dataset": "builtin:digits", "models": ["resnet10t@random"], "scores": []}
    )
    assert job.status_code == 202, job.text
    _problem(client.post(f"/v1/jobs/{job.json()['id']}/confirm", json={}), 422, "job", "only a ranking")


def test_a_confirmation_asked_with_the_job_is_checked_at_submission_and_starts_after_it(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)
    client = _client(settings)
    for confirm, field in (
        ({"budget": 10, "settings": SMALL}, "budget"),  # below one epoch of the shortlist
        ({"settings": {"val_per_class": 180}}, "dataset"),  # a class too small for the split
        ({"dry_run": True}, "confirm"),
        ({"loss": "mse"}, "confirm.loss"),
    ):
        _problem(client.post("/v1/jobs", json={**JOB, "confirm": confirm}), 422, field)
    job = client.post("/v1/jobs", json={**JOB, "confirm": {"top_k": 2, "settings": SMALL}})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert job.json()["confirm"]["top_k"] == 2
    # what the worker's finalise_job task does once the ranking is closed; twice starts one
    send = client.app.state.send_confirm
    first = confirmations.start_requested(settings, job_id, send)
    assert first is not None and confirmations.start_requested(settings, job_id, send) is None
    confirmation = client.get(f"/v1/jobs/{job_id}/confirm").json()
    assert confirmation["id"] == first and confirmation["status"] == "succeeded", confirmation
    assert len(confirmation["result"]["models"]) == 2


def test_a_requested_confirmation_the_ranking_refuses_is_recorded_as_failed(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)
    client = _client(settings)
    # a budget in seconds is checked only once the ranking has measured each model's speed
    job_id = client.post(
        "/v1/jobs", json={**JOB, "confirm": {"budget": 0.001, "budget_unit": "seconds", "settings": SMALL}}
    ).json()["id"]
    confirmation_id = confirmations.start_requested(settings, job_id, client.app.state.send_confirm)
    confirmation = client.get(f"/v1/jobs/{job_id}/confirm").json()
    assert confirmation["id"] == confirmation_id and confirmation["status"] == "failed"
    assert "below the minimum" in confirmation["error"], confirmation
