"""Cancel, delete and deduplicate over HTTP (issue 23): ``POST /v1/jobs/{id}/cancel`` stops a job
and keeps it, ``DELETE /v1/jobs/{id}`` removes it with its rows and files, ``DELETE
/v1/datasets/{id}`` removes an upload with its files and feature-cache entries, and an upload
whose content is stored already is that dataset."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from zoorank_app.confirmations import checkpoints_root
from zoorank_app.db import crud
from zoorank_app.db.models import Confirmation, ConfirmUnit, Dataset, JobModel, ScoreResult
from zoorank_app.db.session import session_scope
from zoorank_app.keys import hash_key
from zoorank_app.main import create_app
from zoorank_app.services.runner import finalise_job, run_model
from zoorank_app.settings import Settings

from tests.service_harness import zip_archive
from zoorank.data.datasets import encode_png
from zoorank.features.cache import FeatureCache
from zoorank.features.extract import FeatureSet

KEY = "zrk_delete-test-key-0123456789abcdefghij"
JOB: dict[str, Any] = {
    "dataset": "builtin:digits",
    "models": ["mobilenetv2_100@random"],
    "scores": ["logme"],
    "options": {"samples_per_class": 5, "input_size": 32, "tap_images_per_class": 0},
}


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])


def _client(settings: Settings, *, run: bool, revoked: list[str] | None = None) -> TestClient:
    """Jobs run inside the request (``run``) or stay queued; revoked task ids are collected."""

    def dispatch(job_id: str, models: list[str]) -> list[str]:
        if run:
            for model in models:
                run_model(settings, job_id, model)
            finalise_job(settings, job_id)
        return [f"task-{job_id}-{m}" for m in models]

    revoke = (revoked if revoked is not None else []).extend
    return TestClient(create_app(settings, dispatch=dispatch, revoke=revoke))


def _count(settings: Settings, table, job_id: str) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(table).where(table.job_id == job_id)))


def _pngs(n: int, value: int) -> list[bytes]:
    rng = np.random.default_rng(value)
    return [
        encode_png(np.clip(rng.normal(value, 20, (16, 16, 3)), 0, 255).astype(np.uint8)) for _ in range(n)
    ]


ENTRIES = {
    f"{cls}/{i}.png": png for cls, v in (("cat", 60), ("dog", 200)) for i, png in enumerate(_pngs(6, v))
}


def _tar(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cancel_has_its_own_verb_and_keeps_the_job(settings):
    revoked: list[str] = []
    client = _client(settings, run=False, revoked=revoked)
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    cancelled = client.post(f"/v1/jobs/{job_id[:8]}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert revoked == [f"task-{job_id}-mobilenetv2_100@random"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]


@pytest.mark.slow
def test_delete_removes_a_finished_job_with_its_rows_and_files(settings):
    client = _client(settings, run=True)
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    assert _count(settings, ScoreResult, job_id) == 1
    with session_scope(settings.database_url) as session:  # a confirmation with a checkpoint on disk
        session.add(Confirmation(id="c" * 32, job_id=job_id, status="running", options={}, plan={}))
        session.flush()
        session.add(ConfirmUnit(confirmation_id="c" * 32, model="m", rung=1, end_epoch=1))
    checkpoint = checkpoints_root(settings, "c" * 32) / "m" / "rung-1.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")

    deleted = client.delete(f"/v1/jobs/{job_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert job_id not in {j["id"] for j in client.get("/v1/jobs").json()["data"]}
    assert client.get("/v1/leaderboard", params={"dataset": "builtin:digits"}).json()["data"] == []
    assert _count(settings, ScoreResult, job_id) == _count(settings, JobModel, job_id) == 0
    assert _count(settings, Confirmation, job_id) == 0
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(ConfirmUnit)) == 0
    assert not checkpoint.parent.parent.exists()
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404


def test_deleting_a_running_job_cancels_it_first_and_its_tasks_then_write_nothing(settings):
    revoked: list[str] = []
    client = _client(settings, run=False, revoked=revoked)
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    model = JOB["models"][0]
    with session_scope(settings.database_url) as session:  # a worker has claimed the model
        assert crud.start_model(session, job_id, model, runner="task-1") == 1
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert revoked == [f"task-{job_id}-{model}"]
    # the running task's next cancel check finds no job: it stops (was: went on, then failed)
    with session_scope(settings.database_url) as session:
        assert crud.model_progress(session, job_id, model, 10) is True
    assert run_model(settings, job_id, model)["status"] == "missing"
    assert _count(settings, ScoreResult, job_id) == 0


@pytest.mark.slow
def test_deletes_need_a_key_like_other_writes(settings):
    keyed = Settings(**{**settings.model_dump(), "api_keys": [hash_key(KEY)]})
    client = _client(keyed, run=False)
    auth = {"Authorization": f"Bearer {KEY}"}
    job_id = client.post("/v1/jobs", json=JOB, headers=auth).json()["id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 401
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 401
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    ref = client.post("/v1/datasets", files={"file": ("a.zip", zip_archive(ENTRIES))}, headers=auth).json()[
        "ref"
    ]
    assert client.delete(f"/v1/datasets/{ref}").status_code == 401
    assert client.delete(f"/v1/datasets/{ref}", headers=auth).status_code == 204


@pytest.mark.slow  # one model's pass on the upload, to fill the feature cache
def test_delete_dataset_removes_its_files_and_cache_entries_not_others(settings):
    client = _client(settings, run=True)
    uploaded = client.post("/v1/datasets", files={"file": ("pets.zip", zip_archive(ENTRIES))}).json()
    ref, upload_id = uploaded["ref"], uploaded["ref"].removeprefix("upload:")
    job = client.post(
        "/v1/jobs", json={**JOB, "dataset": ref, "options": {**JOB["options"], "min_samples_per_class": 5}}
    )
    assert client.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "succeeded"
    cache = FeatureCache.from_settings(settings)
    assert len(cache.entries()) == 1  # written by the job, tagged with the upload's fingerprint
    other = FeatureSet(np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32), {}, np.arange(0), 0.0, 0.0)
    cache.put("f" * 64, other, dataset="another dataset's fingerprint")

    assert client.delete(f"/v1/datasets/{upload_id}").status_code == 204
    assert not (settings.upload_dir / upload_id).exists()
    assert [e.path.stem for e in cache.entries()] == ["f" * 64]
    assert ref not in {d["ref"] for d in client.get("/v1/datasets").json()["data"]}
    assert client.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "succeeded"  # results stay
    assert client.delete(f"/v1/datasets/{ref}").status_code == 404
    refused = client.post("/v1/jobs", json={**JOB, "dataset": ref})
    assert refused.status_code == 422


def test_delete_dataset_is_refused_while_an_open_job_reads_it(settings):
    client = _client(settings, run=False)
    ref = client.post("/v1/datasets", files={"file": ("a.zip", zip_archive(ENTRIES))}).json()["ref"]
    options = {**JOB["options"], "min_samples_per_class": 5}
    job_id = client.post("/v1/jobs", json={**JOB, "dataset": ref, "options": options}).json()["id"]
    refused = client.delete(f"/v1/datasets/{ref}")
    assert refused.status_code == 409 and job_id in refused.json()["detail"]
    assert "cancel" in refused.json()["detail"]
    assert (settings.upload_dir / ref.removeprefix("upload:")).is_dir()
    client.post(f"/v1/jobs/{job_id}/cancel")
    with session_scope(settings.database_url) as session:  # the job ended; its confirmation has not
        session.add(Confirmation(id="d" * 32, job_id=job_id, status="running", options={}, plan={}))
    confirming = client.delete(f"/v1/datasets/{ref}")
    assert confirming.status_code == 409 and f"{job_id} (its confirmation)" in confirming.json()["detail"]
    with session_scope(settings.database_url) as session:
        session.get(Confirmation, "d" * 32).status = "cancelled"
    assert client.delete(f"/v1/datasets/{ref}").status_code == 204


def test_an_upload_of_stored_content_is_that_dataset(settings):
    client = _client(settings, run=False)
    first = client.post("/v1/datasets", files={"file": ("a.zip", zip_archive(ENTRIES))})
    assert first.status_code == 201, first.text
    ref = first.json()["ref"]
    # the same archive again, and the same images packed otherwise (tar.gz, under a top folder)
    again = client.post("/v1/datasets", files={"file": ("b.zip", zip_archive(ENTRIES))})
    repacked = client.post(
        "/v1/datasets", files={"file": ("c.tgz", _tar({f"top/{k}": v for k, v in ENTRIES.items()}))}
    )
    for answer in (again, repacked):
        assert answer.status_code == 200, answer.text
        assert answer.json()["ref"] == ref and answer.headers["location"] == f"/v1/datasets/{ref[7:]}"
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 1
    assert [p.name for p in settings.upload_dir.iterdir() if not p.name.startswith("tmp")] == [ref[7:]]
    page = client.post("/datasets", files={"file": ("e.zip", zip_archive(ENTRIES))})  # the upload form
    assert page.status_code == 200 and "stored already" in page.text and ref in page.text
    # other content is another dataset
    changed = client.post(
        "/v1/datasets", files={"file": ("d.zip", zip_archive({**ENTRIES, "cat/x.png": _pngs(1, 9)[0]}))}
    )
    assert changed.status_code == 201 and changed.json()["ref"] != ref


def test_a_confirmation_unit_of_a_deleted_job_writes_nothing(settings):
    """A unit that was training when its job was deleted ends without writing (was: an
    AttributeError on the missing confirmation row)."""
    from zoorank_app.confirmations import _finish_unit

    _client(settings, run=False)  # the database, migrated
    with session_scope(settings.database_url) as session:
        assert _finish_unit(session, "e" * 32, "m", 1, status="succeeded") is False
