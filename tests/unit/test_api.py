"""HTTP API on SQLite. The queue is replaced by a dispatcher that runs the same service
functions the Celery tasks call (the real worker is in tests/integration)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from zoorank_app.keys import hash_key
from zoorank_app.main import create_app
from zoorank_app.services import runner, validations
from zoorank_app.settings import Settings

from tests.service_harness import zip_archive as _zip
from zoorank.data.datasets import encode_png

KEY = "zrk_unit-test-key-0123456789abcdefghij"  # an API key; the settings hold its hash
OPTIONS = {"samples_per_class": 8, "input_size": 32, "tap_images_per_class": 0}
ONE_MODEL = {
    "dataset": "builtin:digits",
    "models": ["mobilenetv2_100"],
    "scores": ["logme"],
    "options": OPTIONS,
}


def _queued(settings: Settings) -> TestClient:
    """A client whose jobs stay queued: nothing runs them unless the test calls run_model."""
    return TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))


def _keyed(settings: Settings, *keys: str) -> Settings:
    """``settings`` with these API keys, stored as they always are: hashed."""
    return Settings(**{**settings.model_dump(), "api_keys": [hash_key(key) for key in keys]})


def _inline_dispatch(settings: Settings):
    """A dispatch that runs every model of a job, then closes it, inside the request."""

    def dispatch(job_id: str, models: list[str]) -> list[str]:
        for model in models:
            runner.run_model(settings, job_id, model)
        runner.finalise_job(settings, job_id)
        return [f"task-{m}" for m in models]

    return dispatch


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])


@pytest.fixture
def client(settings):
    dispatched: list[str] = []
    run = _inline_dispatch(settings)

    def inline_dispatch(job_id: str, models: list[str]) -> list[str]:
        dispatched.append(job_id)
        return run(job_id, models)

    test_client = TestClient(create_app(settings, dispatch=inline_dispatch, revoke=lambda ids: None))
    test_client.dispatched = dispatched  # type: ignore[attr-defined]
    return test_client


def assert_problem(response, status: int, field: str | None = None, contains: str = ""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and contains in body["detail"]
    if field is not None:
        assert body["field"] == field, body


def test_health_catalogues(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    scores = client.get("/v1/scores").json()
    names = {s["name"] for s in scores["data"]}
    assert {"logme", "linear_probe"} <= names and scores["count"] == len(names)
    assert all(s["direction"] in ("higher", "lower") and s["paper"] for s in scores["data"])
    models = client.get("/v1/models").json()["data"]
    assert {"tf_efficientnet_lite0", "mobilenetv2_100@random"} <= {m["name"] for m in models}
    datasets = client.get("/v1/datasets").json()["data"]
    assert "builtin:digits" in {d["ref"] for d in datasets}
    assert "zoorank_http_requests_total" in client.get("/metrics").text


@pytest.mark.slow
def test_job_lifecycle_and_leaderboard(client):
    response = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["mobilenetv2_100", "mobilenetv2_100@random"],
            "scores": ["logme", "linear_probe"],
            "options": OPTIONS,
        },
    )
    assert response.status_code == 202
    job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded"
    assert len(job["results"]) == 4
    logme = {r["model"]: r["value"] for r in job["results"] if r["score"] == "logme"}
    best = max(logme, key=logme.get)
    assert job["ranking"]["by_score"]["logme"][0] == best
    listing = client.get("/v1/jobs", params={"limit": 1}).json()
    assert (
        listing["count"] == 1
        and listing["data"][0]["id"] == job["id"]
        and listing["data"][0]["results"] == []
    )
    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": "logme"}).json()
    assert [r["rank"] for r in board["data"]] == [1, 2] and board["data"][0]["model"] == best
    page = client.get("/")
    assert page.status_code == 200 and "mobilenetv2_100" in page.text and "<svg" in page.text
    assert 'class="sortable"' in page.text and '<th scope="col" data-sort>model</th>' in page.text
    scored = client.get("/", params={"dataset": "builtin:digits", "score": "logme"}).text
    assert "You et al. 2021, LogME" in scored  # the score's paper
    from zoorank.policy import DEFAULT_RANKING

    logme_tau = DEFAULT_RANKING.provenance["single_scores_heldout"]["logme"]
    assert (
        f"held-out weighted τ on the benchmark {logme_tau:+.2f}" in scored
        and '<th scope="col" data-sort>computed</th>' in scored
    )
    assert client.get("/static/app/sort.js").status_code == 200
    job_page = client.get(f"/jobs/{job['id']}")
    assert job_page.status_code == 200 and "succeeded" in job_page.text
    assert_problem(client.post(f"/v1/jobs/{job['id']}/cancel"), 409, contains="already ended")
    assert_problem(client.get("/v1/jobs/nope"), 404)


@pytest.mark.parametrize(
    ("body", "field", "contains"),
    [
        ({"dataset": "builtin:nope"}, "dataset", "unknown builtin dataset"),
        ({"dataset": "digits"}, "dataset", "KIND:VALUE"),
        ({"dataset": "folder:/etc"}, "dataset", "outside the allowed data roots"),
        ({"dataset": "builtin:digits", "models": []}, "models", "empty"),
        ({"dataset": "builtin:digits", "models": ["resnet9000"]}, "models", "unknown model"),
        (
            {"dataset": "builtin:digits", "models": ["resnet18@file:/etc/passwd.pth"]},
            "models",
            "weight file '/etc/passwd.pth' is outside",
        ),
        ({"dataset": "builtin:digits", "scores": ["nope"]}, "scores", "unknown score"),
        ({"dataset": "builtin:digits", "scores": []}, "scores", "score list is empty"),
        ({"dataset": "builtin:digits", "options": {"input_size": 3}}, "options", "input_size"),
        ({"dataset": "builtin:digits", "options": {"colour": 1}}, "options", "unknown option"),
        # every option of the wrong JSON type is a 422 naming it (these were 500s)
        ({"dataset": "builtin:digits", "options": {"samples_per_class": "ten"}}, "options", "integer"),
        ({"dataset": "builtin:digits", "options": {"input_size": "big"}}, "options", "integer or null"),
        ({"dataset": "builtin:digits", "options": {"seed": True}}, "options", "options.seed"),
        ({"dataset": "builtin:digits", "options": {"seed": [1]}}, "options", "options.seed"),
        ({"dataset": "builtin:digits", "options": {"device": 5}}, "options", "a string"),
        ({"dataset": "builtin:digits", "options": {"bootstrap_resamples": None}}, "options", "integer"),
        ({"dataset": "builtin:digits", "options": {"score_params": "x"}}, "options", "score_params"),
        ({"dataset": "builtin:digits", "options": {"score_params": {"logme": 1}}}, "options", "score_params"),
        ({"dataset": "builtin:digits", "options": []}, "options", ""),
        ({"models": ["mobilenetv2_100"]}, "dataset", "Field required"),
        ({"dataset": "builtin:digits", "extra": 1}, "extra", ""),
    ],
)
def test_bad_input_is_a_problem_naming_the_field(client, body, field, contains):
    assert_problem(client.post("/v1/jobs", json=body), 422, field, contains)
    assert client.dispatched == []  # nothing was queued


def test_malformed_json(client):
    response = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(response, 422)


def _write_npz(settings, name: str, labels: np.ndarray) -> str:
    root = settings.data_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(root / name, x=rng.integers(0, 255, (labels.size, 8, 8), dtype=np.uint8), y=labels)
    return f"npz:{root / name}"


def test_too_few_classes_or_samples_refused_before_queueing(client, settings):
    one_class = _write_npz(settings, "one.npz", np.zeros(20, dtype=int))
    assert_problem(client.post("/v1/jobs", json={"dataset": one_class}), 422, "dataset", "at least 2")
    few = _write_npz(settings, "few.npz", np.array([0] * 10 + [1] * 3))
    assert_problem(client.post("/v1/jobs", json={"dataset": few}), 422, "dataset", "fewer than 5 samples")
    assert client.dispatched == []


def test_api_keys_guard_writes(settings):
    keyed = _keyed(settings, KEY)
    client = _queued(keyed)
    response = client.post("/v1/jobs", json={"dataset": "builtin:digits", "models": ["mobilenetv2_100"]})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/jobs").status_code == 200  # reads stay open
    ok = client.post(
        "/v1/jobs",
        json={"dataset": "builtin:digits", "models": ["mobilenetv2_100"], "options": OPTIONS},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert ok.status_code == 202


def _images(n: int, value: int) -> list[bytes]:
    rng = np.random.default_rng(value)
    return [
        encode_png(np.clip(rng.normal(value, 20, (16, 16, 3)), 0, 255).astype(np.uint8)) for _ in range(n)
    ]


def test_upload_archive_then_rank_it(client):
    entries = {
        f"set/{cls}/{i}.png": png
        for cls, v in (("cat", 60), ("dog", 200))
        for i, png in enumerate(_images(6, v))
    }
    response = client.post("/v1/datasets", files={"file": ("set.zip", _zip(entries), "application/zip")})
    assert response.status_code == 201, response.text
    uploaded = response.json()
    assert uploaded["classes"] == 2 and uploaded["images"] == 12 and uploaded["ref"].startswith("upload:")
    assert uploaded["ref"] in {d["ref"] for d in client.get("/v1/datasets").json()["data"]}
    job = client.post(
        "/v1/jobs",
        json={
            "dataset": uploaded["ref"],
            "models": ["mobilenetv2_100@random"],
            "scores": ["logme"],
            "options": {**OPTIONS, "min_samples_per_class": 5},
        },
    )
    assert job.status_code == 202, job.text
    assert client.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("name", "contains"),
    [
        ("../../evil/x.png", "path traversal"),
        ("/abs/x.png", "path traversal"),
        ("a/b/c/d.png", "CLASS/IMAGE"),
    ],
)
def test_upload_refuses_unsafe_archives(client, name, contains):
    png = _images(1, 10)[0]
    archive = _zip({name: png, "ok/1.png": png})
    assert_problem(client.post("/v1/datasets", files={"file": ("x.zip", archive)}), 422, "file", contains)


def test_upload_refuses_links_corrupt_images_and_bombs(client, settings):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("cls/link.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    assert_problem(
        client.post("/v1/datasets", files={"file": ("x.tar", buffer.getvalue())}),
        422,
        "file",
        "link",
    )
    hard = io.BytesIO()  # a hard link to a file outside the archive
    with tarfile.open(fileobj=hard, mode="w") as tf:
        info = tarfile.TarInfo("cls/hard.png")
        info.type = tarfile.LNKTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    assert_problem(
        client.post("/v1/datasets", files={"file": ("h.tar", hard.getvalue())}), 422, "file", "link"
    )
    assert not any(settings.upload_dir.rglob("hard.png"))  # nothing written
    corrupt = _zip({"a/1.png": b"not a png", "a/2.png": b"x", "b/1.png": b"y", "b/2.png": b"z"})
    response = client.post("/v1/datasets", files={"file": ("c.zip", corrupt)})
    assert_problem(response, 422, "dataset", "image a/1.png is not a readable image")
    assert str(settings.var_dir) not in response.text and "/tmp" not in response.text  # no server paths
    from PIL import Image

    huge = io.BytesIO()
    Image.new("L", (12000, 12000)).save(huge, format="PNG")  # 144 Mpx, compresses to ~140 kB
    bomb = _zip(
        {
            "a/1.png": huge.getvalue(),
            "a/2.png": huge.getvalue(),
            "b/1.png": huge.getvalue(),
            "b/2.png": huge.getvalue(),
        }
    )
    assert_problem(client.post("/v1/datasets", files={"file": ("b.zip", bomb)}), 422, "dataset", "pixels")
    assert_problem(client.post("/v1/datasets", files={"file": ("n.zip", b"plain text")}), 422, "file")
    # a zip whose stored CRC does not match its content (was a 500)
    damaged = bytearray(_zip({"a/1.png": b"0" * 100, "b/1.png": b"1" * 100}))
    damaged[damaged.find(b"0" * 100)] = ord("9")
    assert_problem(
        client.post("/v1/datasets", files={"file": ("d.zip", bytes(damaged))}), 422, "file", "corrupt"
    )


def test_register_model_checks_weights(client, settings):
    import torch
    from safetensors.torch import save_file

    root = settings.data_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.ones(2)}, str(root / "bad.safetensors"))
    response = client.post(
        "/v1/models",
        json={
            "name": "mine",
            "architecture": "resnet10t",
            "weights": f"file:{root / 'bad.safetensors'}",
        },
    )
    assert_problem(response, 422, "models", "1 tensors, the model has")
    assert_problem(
        client.post(
            "/v1/models",
            json={"name": "x", "architecture": "resnet10t", "weights": "file:/etc/x.pth"},
        ),
        422,
        "weights",
        "weight file '/etc/x.pth' is outside",
    )
    assert_problem(
        client.post(
            "/v1/models",
            json={"name": "mobilenetv2_100", "architecture": "resnet10t", "weights": "random"},
        ),
        409,
    )
    created = client.post(
        "/v1/models", json={"name": "r10-random", "architecture": "resnet10t", "weights": "random"}
    )
    assert created.status_code == 201 and created.json()["imagenet_top1"] == 0.1
    assert "r10-random" in {m["name"] for m in client.get("/v1/models").json()["data"]}


@pytest.mark.slow
def test_validation_job_stores_ground_truth_on_the_leaderboard(settings, capsys):
    def inline_validate(job_id: str) -> list[str]:
        validations.run_validation(settings, job_id)
        return []

    client = TestClient(
        create_app(
            settings,
            dispatch=_inline_dispatch(settings),
            revoke=lambda ids: None,
            dispatch_validation=inline_validate,
        )
    )
    models = ["mobilenetv2_100", "mobilenetv2_100@random", "tf_efficientnet_lite0@random"]
    client.post(
        "/v1/jobs",
        json={"dataset": "builtin:digits", "models": models, "scores": ["logme"], "options": OPTIONS},
    )
    body = {
        "dataset": "builtin:digits",
        "models": models,
        "scores": ["logme"],
        "mode": "linear",
        "seeds": [0],
        "settings": {"train_per_class": 12, "val_per_class": 4, "test_per_class": 10, "input_size": 32},
    }
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/validations/{response.json()['id']}"
    job = client.get(f"/v1/validations/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job["error"]
    agreement = {a["score"]: a for a in job["ranking"]["agreement"]}
    assert "logme" in agreement
    truth = {g["model"]: g["accuracy"] for g in job["ranking"]["ground_truth"]}
    assert set(truth) == set(models) and all(0.0 <= a <= 1.0 for a in truth.values())
    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": "logme"}).json()
    assert {r["model"]: r["ground_truth"] for r in board["data"]} == pytest.approx(truth)
    assert all(r["ground_truth_mode"] == "linear" for r in board["data"])
    # the leaderboard page plots the ranking against the ground truth, with its weighted tau
    from scipy.stats import weightedtau

    expected = weightedtau([-r["rank"] for r in board["data"]], [r["ground_truth"] for r in board["data"]])[0]
    page = client.get("/", params={"dataset": "builtin:digits", "score": "logme"}).text
    assert 'id="truth"' in page and f"weighted Kendall τ {expected:+.2f}" in page
    assert "logme against ground truth</title>" in page
    job_page = client.get(f"/jobs/{board['data'][0]['job_id']}").text  # the same figure for the job
    assert 'id="truth"' in job_page and "the default ranking against ground truth</title>" in job_page
    # the validation job's own page and `zoorank jobs show` (a 500 and a KeyError before)
    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 200, page.text[-500:]
    assert 'id="ground-truth"' in page.text and 'id="agreement"' in page.text
    assert all(f"{accuracy:.3f}" in page.text for accuracy in truth.values())
    from zoorank.cli.render import print_job

    capsys.readouterr()
    print_job(job)
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "agreement with the ground truth" in printed and "logme" in printed
    assert_problem(client.post("/v1/validations", json={**body, "loss": "powergrad"}), 422, "loss")
    assert_problem(client.post("/v1/validations", json={**body, "mode": "guess"}), 422, "mode")
    assert_problem(client.post("/v1/validations", json={**body, "seeds": []}), 422, "seeds")
    assert_problem(client.post("/v1/validations", json={**body, "settings": {"epochs": 0}}), 422, "settings")


@pytest.mark.slow
def test_job_ranking_equals_in_process_rank(client, tmp_path):
    """POST /v1/jobs and `zoorank.rank.rank` with the same options give the same values and
    ranking (the CLI's `zoorank rank --json` calls the latter)."""
    from zoorank.rank import RankOptions, rank

    models = ["mobilenetv2_100", "tf_efficientnet_lite0@random"]
    scores = ["leep", "nce", "knn"]
    job_id = client.post(
        "/v1/jobs", json={"dataset": "builtin:digits", "models": models, "scores": scores, "options": OPTIONS}
    ).json()["id"]
    job = client.get(f"/v1/jobs/{job_id}").json()
    local = rank("builtin:digits", models, scores, RankOptions.from_dict(OPTIONS), cache_dir=tmp_path)
    assert job["ranking"]["by_score"] == local.ranking["by_score"]
    assert job["ranking"]["aggregate"] == local.ranking["aggregate"]
    assert job["sample_ids"] == local.sample_ids
    values = {(r["model"], r["score"]): r["value"] for r in job["results"]}
    assert values == pytest.approx(
        {(r.model, s): v.value for r in local.results for s, v in r.scores.items()}
    )


def test_validation_refuses_weight_files_outside_data_roots(client):
    body = {
        "dataset": "builtin:digits",
        "models": ["resnet10t@file:/etc/x.pth"],
        "mode": "linear",
        "seeds": [0],
    }
    assert_problem(client.post("/v1/validations", json=body), 422, "models", "weight file")
    assert_problem(client.post("/v1/validations", json={**body, "models": []}), 422, "models", "empty")


@pytest.mark.slow
def test_leaderboard_ranks_only_comparable_results_and_defaults_to_the_default_ranking(client, settings):
    """Values computed under other options, and values of a cancelled job, never share a
    ranking: the bug was a 10-per-class LogME value topping a 50-per-class board."""
    from zoorank_app.db import crud
    from zoorank_app.db.session import session_scope

    body = {"dataset": "builtin:digits", "models": ["mobilenetv2_100", "mobilenetv2_100@random"]}
    ten = OPTIONS | {"samples_per_class": 10}
    first = client.post("/v1/jobs", json=body | {"options": OPTIONS}).json()["id"]
    cancelled = client.post("/v1/jobs", json=body | {"options": ten}).json()["id"]
    with session_scope(settings.database_url) as session:  # cancelled after its results were written
        job = crud.get_job(session, cancelled)
        job.status = "cancelled"

    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits"}).json()
    assert board["score"] is None and board["policy"]["scores"]  # the default ranking
    assert len(board["option_sets"]) == 1 and board["option_set"]["options"]["samples_per_class"] == 8
    assert {r["job_id"] for r in board["data"]} == {first}
    job = client.get(f"/v1/jobs/{first}").json()
    assert [r["model"] for r in board["data"]] == [r["model"] for r in job["ranking"]["aggregate"]]
    assert all(0.0 <= r["p_top1"] <= 1.0 for r in board["data"])
    assert sum(r["p_top1"] for r in board["data"]) == pytest.approx(1.0)

    later = client.post("/v1/jobs", json=body | {"options": ten}).json()["id"]
    default_score = board["policy"]["scores"][0]  # a score the jobs computed (they named none)
    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": default_score}).json()
    assert len(board["option_sets"]) == 2 and {r["job_id"] for r in board["data"]} == {later}
    older = next(o["key"] for o in board["option_sets"] if o["options"]["samples_per_class"] == 8)
    board = client.get(
        "/v1/leaderboard", params={"dataset": "builtin:digits", "score": default_score, "option_set": older}
    ).json()
    assert {r["job_id"] for r in board["data"]} == {first}
    assert_problem(
        client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "option_set": "nope"}),
        422,
        field="option_set",
    )
    assert client.get("/v1/leaderboard").status_code == 422  # a dataset is required
    page = client.get("/", params={"dataset": "builtin:digits"})
    assert page.status_code == 200 and 'id="policy"' in page.text and "P(top-1)" in page.text


def test_job_stores_and_shows_the_layer_tree_explanation(client):
    response = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["mobilenetv2_100"],
            "scores": ["layer_tree_fidelity"],
            "options": {"samples_per_class": 10, "input_size": 32, "tap_images_per_class": 0},
        },
    )
    assert response.status_code == 202, response.text
    job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    (result,) = job["results"]
    assert job["status"] == "succeeded" and result["error"] is None
    details = result["details"]
    assert [layer["layer"] for layer in details["layers"]] == [1, 2]
    assert 0.0 <= details["layers"][0]["fidelity"] <= 1.0 and details["layers"][0]["rules"]
    assert result["value"] == max(details["kappa_at_budget"])
    (group, *_) = details["saliency"]
    assert len(group["samples"]) == 3 and np.asarray(group["samples"][0]["map"]).shape == (32, 32)
    page = client.get(f"/jobs/{job['id']}").text
    assert 'id="explanations"' in page and "Trees per hidden layer of mobilenetv2_100" in page
    assert page.count('src="data:image/png;base64,') == 2 * 3 * len(details["saliency"])
    assert f"{details['layers'][0]['tree']['unit']} on" in page or "→ class" in page
    assert "http://" not in page.split("<body>")[1] and "https://" not in page.split("<body>")[1]


def _cancel_every_job(settings):
    """Cancel the (one) job as a user's DELETE would, from inside the running task."""
    from sqlalchemy import select
    from zoorank_app.db import crud
    from zoorank_app.db.models import Job
    from zoorank_app.db.session import session_scope

    with session_scope(settings.database_url) as session:
        for job in session.scalars(select(Job)).all():
            crud.cancel_job(session, job)


@pytest.mark.parametrize("when", ["between batches", "between scores"])
def test_cancel_mid_model_stops_the_task_and_writes_nothing(client, settings, monkeypatch, when):
    from zoorank_app.db import crud

    import zoorank.rank

    if when == "between batches":
        real_progress = crud.model_progress

        def progress_then_cancel(session, job_id, model, images_done):
            _cancel_every_job(settings)
            return real_progress(session, job_id, model, images_done)

        monkeypatch.setattr(crud, "model_progress", progress_then_cancel)
    else:
        real_run_score = zoorank.rank.run_score
        scored: list[str] = []

        def score_then_cancel(name, *args, **kwargs):
            scored.append(name)
            record = real_run_score(name, *args, **kwargs)
            _cancel_every_job(settings)
            return record

        monkeypatch.setattr(zoorank.rank, "run_score", score_then_cancel)
    response = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["mobilenetv2_100", "mobilenetv2_100@random"],
            "scores": ["logme", "leep"],
            "options": OPTIONS,
        },
    )
    assert response.status_code == 202, response.text
    job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "cancelled" and job["results"] == []
    assert [p["status"] for p in job["progress"]] == ["cancelled", "cancelled"]
    if when == "between scores":
        assert scored == ["logme"]  # the second score of the first model never ran
    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": "logme"}).json()
    assert board["data"] == []


class _Killed(BaseException):
    """Stands for the worker process dying (SIGKILL): nothing after it runs in the task."""


def test_a_task_killed_while_loading_the_dataset_counts_as_an_attempt(client, settings, monkeypatch):
    from zoorank_app.db import crud
    from zoorank_app.db.session import session_scope

    response = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["mobilenetv2_100"],
            "scores": ["logme"],
            "options": OPTIONS,
        },
    )
    job_id = response.json()["id"]  # attempt 1 ran inline and succeeded
    loads = []

    def killed_while_loading(*args, **kwargs):
        loads.append(1)
        raise _Killed

    monkeypatch.setattr(runner, "prepare_dataset", killed_while_loading)
    with session_scope(settings.database_url) as session:  # as if queued again after a crash
        crud.set_model_status(session, job_id, "mobilenetv2_100", "queued")
    for _ in range(runner.MAX_ATTEMPTS - 1):  # attempts 2.. MAX_ATTEMPTS die while loading
        with pytest.raises(_Killed):
            runner.run_model(settings, job_id, "mobilenetv2_100")
    # The redelivery after MAX_ATTEMPTS deaths gives up before touching the dataset again.
    outcome = runner.run_model(settings, job_id, "mobilenetv2_100")
    assert outcome["status"] == "failed" and "gave up" in outcome["error"]
    assert len(loads) == runner.MAX_ATTEMPTS - 1
    progress = client.get(f"/v1/jobs/{job_id}").json()["progress"][0]
    assert progress["attempts"] == runner.MAX_ATTEMPTS + 1 and progress["status"] == "failed"


@pytest.mark.slow
def test_a_model_past_the_task_time_limit_is_failed_with_the_reason(tmp_path, monkeypatch):
    """A score that takes too long (here: sleeps past the limit) stops the model at the next
    check: the model is failed with the reason, the other models still run, the job is partial."""
    import time as time_module

    import zoorank.rank

    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], task_soft_time_limit=8)
    real_run_score = zoorank.rank.run_score
    slow_model = {"calls": 0}

    def slow_first_model(name, inputs, *args, **kwargs):
        slow_model["calls"] += 1
        if slow_model["calls"] == 1:
            time_module.sleep(7.5)  # the first model's first score hangs past the limit
        return real_run_score(name, inputs, *args, **kwargs)

    monkeypatch.setattr(zoorank.rank, "run_score", slow_first_model)

    client = TestClient(create_app(settings, dispatch=_inline_dispatch(settings), revoke=lambda ids: None))
    response = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["mobilenetv2_100", "mobilenetv2_100@random"],
            "scores": ["logme", "leep"],
            "options": OPTIONS,
        },
    )
    job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    first, second = job["progress"]
    assert first["status"] == "failed" and "time limit of 8 s" in first["error"]
    assert second["status"] == "succeeded" and job["status"] == "partial"
    assert {r["model"] for r in job["results"]} == {"mobilenetv2_100@random"}


def test_task_time_limits_and_redis_visibility_timeout_follow_one_setting(tmp_path):
    from zoorank_app.celery_client import make_celery

    settings = Settings(
        var_dir=tmp_path / "var", broker_url="redis://127.0.0.1:6379/0", task_soft_time_limit=100
    )
    conf = make_celery(settings).conf
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 220)
    # a running task is never redelivered to a second worker while it can still be running
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_database_unreachable_is_a_503_problem_and_the_api_recovers(settings, monkeypatch):
    from sqlalchemy.exc import OperationalError
    from zoorank_app.db import crud

    down = Settings(
        var_dir=settings.var_dir,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/test",  # nothing listens there
        auto_migrate=False,
    )
    response = _queued(down).get("/v1/jobs")
    assert_problem(response, 503, contains="database is unreachable")
    assert response.headers["retry-after"] == "5"

    client = _queued(settings)
    real = crud.get_job

    def outage(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(crud, "get_job", outage)
    assert_problem(client.get("/v1/jobs/abc"), 503)
    monkeypatch.setattr(crud, "get_job", real)
    assert_problem(client.get("/v1/jobs/abc"), 404)  # recovered: the next request is answered


def test_metrics_report_the_work_from_the_database(client):
    body = {
        "dataset": "builtin:digits",
        "models": ["mobilenetv2_100", "mobilenetv2_100@random"],
        "scores": ["logme", "leep"],
        "options": OPTIONS,
    }
    assert client.post("/v1/jobs", json=body).status_code == 202
    assert client.post("/v1/jobs", json={**body, "models": ["resnet10t@file:nowhere.pth"]}).status_code == 422
    text = client.get("/metrics").text
    assert 'zoorank_jobs{kind="ranking",status="succeeded"} 1.0' in text
    assert 'zoorank_job_models{status="succeeded"} 2.0' in text
    assert (
        'zoorank_score_results{score="logme"} 2.0' in text
        and 'zoorank_score_results{score="leep"} 2.0' in text
    )
    assert 'zoorank_model_feature_seconds_sum{model="mobilenetv2_100"}' in text
    assert "zoorank_queue_depth -1.0" in text  # the embedded filesystem broker cannot tell
    assert 'zoorank_http_requests_total{method="POST",route="/v1/jobs",status="422"}' in text


@pytest.mark.parametrize(
    ("page", "asset"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_api_docs_load_nothing_from_another_host(client, page, asset):
    import re

    html = client.get(page)
    assert html.status_code == 200 and asset in html.text
    # every src/href is a path on this server (a closed network has no CDN)
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text) + re.findall(
        r"""url\s*:\s*["']([^"']+)["']""", html.text
    )
    assert links and all(link.startswith("/") for link in links), links
    assert "fonts.googleapis" not in html.text and "cdn.jsdelivr" not in html.text
    served = client.get(f"/static/docs/{asset}")
    assert served.status_code == 200 and len(served.content) > 100_000
    assert client.get("/openapi.json").json()["info"]["title"] == "zoorank"


def test_catalogue_pages(client):
    models = client.get("/models")
    assert models.status_code == 200
    assert "tf_efficientnet_lite0@random" in models.text and "4.7 M" in models.text  # timm's lite0: 4.65 M
    scores = client.get("/scores").text
    assert 'id="default"' in scores and "layer_tree_fidelity" in scores and "expensive" in scores
    datasets = client.get("/datasets").text
    assert "builtin:digits" in datasets and 'href="/?dataset=builtin%3Adigits"' in datasets
    assert 'alt="an image of class 0"' in datasets and 'enctype="multipart/form-data"' in datasets
    for page in (models.text, scores, datasets):
        assert '<th scope="col">' in page and "<caption>" in page


def test_job_page_polls_and_offers_cancel_only_while_the_job_runs(settings):
    queued = _queued(settings)
    body = ONE_MODEL
    job_id = queued.post("/v1/jobs", json=body).json()["id"]
    page = queued.get(f"/jobs/{job_id}").text
    assert f'data-job-id="{job_id}"' in page and 'data-status="queued"' in page
    assert '<form id="cancel">' in page and 'name="api-key"' not in page
    assert 'tr data-model="mobilenetv2_100"' in page and 'data-field="images"' in page
    script = queued.get("/static/app/job.js")
    assert script.status_code == 200 and '"/cancel", { method: "POST"' in script.text
    assert 'fetch("/v1/jobs/" + id, { method: "DELETE"' in script.text and '<form id="delete">' in page
    assert queued.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    ended = queued.get(f"/jobs/{job_id}").text
    assert '<form id="cancel">' not in ended and '<form id="delete">' in ended  # nothing to cancel

    keyed = _keyed(settings, KEY)
    client = _queued(keyed)
    job_id = client.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {KEY}"}).json()["id"]
    page = client.get(f"/jobs/{job_id}").text
    assert 'type="password" name="api-key"' in page and KEY not in page  # asked, never stored


def test_job_page_draws_the_betti_profile_and_the_margins(client):
    body = {
        "dataset": "builtin:digits",
        "models": ["mobilenetv2_100", "mobilenetv2_100@random"],
        "scores": ["betti_slope_norm", "hidden_margin"],
        "options": {**OPTIONS, "tap_images_per_class": 2},
    }
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=body).json()['id']}").json()
    omega = {
        r["model"]: np.asarray(r["details"]["omega"])
        for r in job["results"]
        if r["score"] == "betti_slope_norm"
    }
    page = client.get(f"/jobs/{job['id']}").text
    assert 'id="figures"' in page and page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
    assert page.count('role="img"') == 3 and "Normalised Betti profile over depth</title>" in page
    # the text alternative lists each model's normalised profile: last point = omega[-1] / |omega|
    for model, values in omega.items():
        assert f"{model}: (0.00, {values[0] / np.linalg.norm(values):.3f})" in page
    assert "Hidden margins of held-out samples</title>" in page and "median" in page


def test_new_job_form_submits_through_the_same_checks(client, settings):
    form = client.get("/jobs/new?dataset=builtin:digits").text
    assert 'value="builtin:digits"' in form and '<label for="dataset">' in form
    assert 'value="layer_tree_fidelity" >' in form and "(expensive)" in form  # not preselected
    assert 'value="logme" checked' in form  # the default set is preselected
    bad = client.post("/jobs/new", data={"dataset": "builtin:digits", "models": [], "scores": ["logme"]})
    assert (
        bad.status_code == 422 and "model list is empty" in bad.text and 'value="logme" checked' in bad.text
    )
    wrong = client.post(
        "/jobs/new",
        data={"dataset": "builtin:digits", "models": ["mobilenetv2_100"], "samples_per_class": "ten"},
    )
    # the message of the API and the CLI: one rule
    assert wrong.status_code == 422 and "options.samples_per_class must be an integer" in wrong.text
    ok = client.post(
        "/jobs/new",
        data={
            "dataset": "builtin:digits",
            "models": ["mobilenetv2_100"],
            "extra_models": "mobilenetv2_100@random",
            "scores": ["logme"],
            "samples_per_class": "8",
            "input_size": "32",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"].startswith("/jobs/")
    job = client.get("/v1" + ok.headers["location"]).json()
    assert (
        job["models"] == ["mobilenetv2_100", "mobilenetv2_100@random"]
        and job["options"]["samples_per_class"] == 8
    )

    keyed = _keyed(settings, KEY)
    guarded = _queued(keyed)
    body = {"dataset": "builtin:digits", "models": ["mobilenetv2_100"], "scores": ["logme"]}
    refused = guarded.post("/jobs/new", data={**body, "api_key": "nope"})
    assert refused.status_code == 401 and "API key" in refused.text and "nope" not in refused.text
    accepted = guarded.post("/jobs/new", data={**body, "api_key": KEY}, follow_redirects=False)
    assert accepted.status_code == 303


def test_upload_form_adds_a_dataset_or_says_why_not(client):
    archive = _zip({f"{cls}/{i}.png": png for cls in ("cat", "dog") for i, png in enumerate(_images(3, 40))})
    added = client.post("/datasets", files={"file": ("pets.zip", archive)}, data={"name": "pets"})
    assert added.status_code == 201 and 'id="added"' in added.text and "pets" in added.text
    assert 'alt="an image of class cat"' in added.text
    refused = client.post("/datasets", files={"file": ("evil.zip", _zip({"../x/1.png": _images(1, 5)[0]}))})
    assert refused.status_code == 422 and 'role="alert"' in refused.text
    empty = client.post("/datasets", data={"name": "nothing"})
    assert empty.status_code == 422 and "choose an archive" in empty.text


def test_zoorank_device_is_the_workers_default_device(settings, monkeypatch):
    """ZOORANK_DEVICE reaches the model's pass when the job leaves the device at "auto"."""
    seen: list[str] = []
    real = runner.score_model

    def spy(prepared, spec, scores, options, **kwargs):
        seen.append(options.device)
        return real(prepared, spec, scores, options, **kwargs)

    monkeypatch.setattr(runner, "score_model", spy)
    cpu = Settings(**{**settings.model_dump(), "device": "cpu"})
    client = _queued(cpu)
    body = ONE_MODEL
    first = client.post("/v1/jobs", json=body).json()["id"]
    runner.run_model(cpu, first, "mobilenetv2_100")
    auto = Settings(**{**settings.model_dump(), "device": "auto"})
    second = client.post("/v1/jobs", json={**body, "options": {**OPTIONS, "device": "cpu"}}).json()["id"]
    runner.run_model(auto, second, "mobilenetv2_100")
    assert seen == ["cpu", "cpu"]  # the worker's setting, then the job's own choice


@pytest.mark.parametrize(
    ("request_", "field", "message"),
    [
        ({"seeds": [0, 0]}, "seeds", "distinct"),
        ({"seeds": []}, "seeds", "1 to 10"),
        ({"mode": "fast"}, "mode", "mode must be one of"),
        ({"mode": "linear", "loss": "powergrad"}, "loss", "finetune only"),
        ({"mode": "finetune", "loss": "powergrad", "alpha": 2.0}, "alpha", "alpha"),
    ],
)
def test_one_validation_rule_for_library_cli_and_http(client, request_, field, message):
    """The same bad ground-truth request gets the same field and message from all three."""
    from typer.testing import CliRunner

    from zoorank.cli import load_commands

    cli = load_commands()
    from zoorank.errors import InvalidInputError
    from zoorank.groundtruth import validate

    with pytest.raises(InvalidInputError) as caught:
        validate("builtin:digits", ["mobilenetv2_100"], **request_)
    assert caught.value.field == field and message in str(caught.value)
    assert_problem(
        client.post("/v1/validations", json={"dataset": "builtin:digits", **request_}), 422, field, message
    )
    argv = ["validate", "--dataset", "builtin:digits", "--models", "mobilenetv2_100"]
    for key, value in request_.items():
        argv += [f"--{key}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    result = CliRunner().invoke(cli, argv)  # an empty list goes as --seeds ""
    assert result.exit_code == 2 and message in result.output, result.output
    assert client.dispatched == []


def test_json_logs_carry_the_job_model_and_task():
    import io
    import json as json_module
    import logging

    from zoorank_app.logs import ContextFilter, JsonFormatter, log_context

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("zoorank.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with log_context(task_id="t-1"), log_context(job_id="j-1", model="m"):
            logger.info("scored %d models", 2)
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json_module.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "scored 2 models" and inside["level"] == "INFO"
    assert (inside["job_id"], inside["model"], inside["task_id"]) == ("j-1", "m", "t-1")
    assert "job_id" not in outside and outside["logger"] == "zoorank.test.logs"


def test_too_few_samples_per_class_is_refused_everywhere(client):
    from typer.testing import CliRunner

    from zoorank.cli import load_commands
    from zoorank.errors import InvalidInputError
    from zoorank.rank import RankOptions

    with pytest.raises(InvalidInputError) as err:  # was accepted, then 6 of 20 scores failed
        RankOptions.from_dict({"samples_per_class": 1})
    assert "below min_samples_per_class 5" in str(err.value)
    body = {"dataset": "builtin:digits", "models": ["resnet10t@random"], "options": {"samples_per_class": 1}}
    assert_problem(client.post("/v1/jobs", json=body), 422, "options", "below min_samples_per_class 5")
    RankOptions.from_dict({"samples_per_class": 1, "min_samples_per_class": 1})  # lowered: allowed
    result = CliRunner().invoke(
        load_commands(),
        ["rank", "--dataset", "builtin:digits", "--models", "resnet10t@random", "--samples-per-class", "1"],
    )
    assert result.exit_code == 2 and "below min_samples_per_class" in result.output, result.output


def test_a_job_whose_scores_failed_is_partial_not_succeeded(client, monkeypatch):
    import zoorank.rank

    real_run_score = zoorank.rank.run_score

    def leep_fails(name, inputs, params):
        record = real_run_score(name, inputs, params)
        if name == "leep":
            record.value, record.error = None, "InvalidInputError: broken on purpose"
        return record

    monkeypatch.setattr(zoorank.rank, "run_score", leep_fails)
    response = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["resnet10t@random"],
            "scores": ["nce", "leep"],
            "options": OPTIONS,
        },
    )
    assert response.status_code == 202, response.text
    job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "partial", job["status"]  # was "succeeded"
    assert "scores failed: leep" in job["error"]


def test_a_sample_larger_than_every_class_is_recorded_as_every_image(client):
    job = client.post(
        "/v1/jobs",
        json={
            "dataset": "builtin:digits",
            "models": ["resnet10t@random"],
            "scores": ["nce"],
            "options": {"samples_per_class": 100000000, "input_size": 32},
        },
    ).json()
    assert job["options"]["samples_per_class"] == 0  # was recorded as 100000000
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded" and len(job["sample_ids"]) == 1797


def test_hub_weights_while_offline_are_refused_at_submission(client, monkeypatch):
    from typer.testing import CliRunner

    from zoorank.cli import load_commands

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(client.app.state.settings.var_dir / "empty-hub"))  # no cached copy
    body = {"dataset": "builtin:digits", "models": ["resnet18@timm"], "scores": ["nce"]}
    # was 202, then the job failed with the hub's LocalEntryNotFoundError
    assert_problem(client.post("/v1/jobs", json=body), 422, "models", "ZOORANK_OFFLINE=1")
    result = CliRunner().invoke(
        load_commands(), ["rank", "--dataset", "builtin:digits", "--models", "resnet18@timm"]
    )
    assert result.exit_code == 2 and "offline" in result.output, result.output
