"""Work done once (issue 15): a job reads its dataset's bytes for the identity once, in the
request, and each model's task reads only the images it scores. Counted with a spy on file
opens (not timed), with the API and the "worker" in one process and the identity cache emptied
between them, as if the worker were another process."""

from __future__ import annotations

import builtins
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from zoorank_app.main import create_app
from zoorank_app.services.runner import finalise_job, run_model
from zoorank_app.services.validations import run_validation
from zoorank_app.settings import Settings

from zoorank.data import identity
from zoorank.data.datasets import encode_png

MODELS = ["mobilenetv2_100@random", "tf_efficientnet_lite0@random", "resnet10t@random"]
PER_CLASS = 4  # images each model scores per class
OPTIONS = {
    "samples_per_class": PER_CLASS,
    "input_size": 32,
    "tap_images_per_class": 0,
    "min_samples_per_class": 2,
}


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)


def _folder(root: Path, classes: int = 2, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            (root / f"class{c}" / f"{i}.png").write_bytes(encode_png(image))
    return root


class OpenSpy:
    """Counts opens of files under ``root`` through ``open``/``io.open`` (Path.read_bytes and
    PIL both go through one of them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.root = str(root)
        self.opens: Counter[str] = Counter()
        real = builtins.open

        def spy(file, *args, **kwargs):
            if isinstance(file, str | Path) and str(file).startswith(self.root):
                self.opens[str(file)] += 1
            return real(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", spy)
        monkeypatch.setattr(io, "open", spy)

    def total(self) -> int:
        return sum(self.opens.values())

    def reset(self) -> None:
        self.opens.clear()


def _run_like_a_worker(settings: Settings, job_id: str, models: list[str]) -> None:
    for model in models:
        outcome = run_model(settings, job_id, model)
        assert outcome["status"] == "succeeded", outcome
    assert finalise_job(settings, job_id) == "succeeded"


def test_a_job_reads_its_folder_dataset_once_for_identity_and_each_model_only_its_images(
    settings, monkeypatch
):
    root = _folder(settings.data_roots[0] / "set")
    files = 12
    scored = 2 * PER_CLASS  # images one model reads for its forward pass
    identity.cache_clear()
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    spy = OpenSpy(monkeypatch, root)
    body = {"dataset": f"folder:{root}", "models": MODELS, "scores": ["logme"], "options": OPTIONS}

    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    assert spy.total() == files and set(spy.opens.values()) == {1}  # the request hashes each file once

    identity.cache_clear()  # the worker is another process: nothing cached from the request
    spy.reset()
    _run_like_a_worker(settings, response.json()["id"], MODELS)
    # Each model's task opens only the images it scores: the job's stored fingerprint stands
    # for the dataset (before: every task hashed all 12 files again, 12 + 8 opens per model).
    assert spy.total() == len(MODELS) * scored, dict(spy.opens)

    spy.reset()
    again = client.post("/v1/jobs", json=body)  # a second job on the same, unchanged folder
    assert again.status_code == 202 and spy.total() == 0  # the identity is cached: no file read


def test_a_folder_changed_after_submission_fails_the_model_with_the_reason(settings):
    root = _folder(settings.data_roots[0] / "set")
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    body = {"dataset": f"folder:{root}", "models": MODELS[:1], "scores": ["logme"], "options": OPTIONS}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    image = np.full((8, 8, 3), 7, dtype=np.uint8)
    (root / "class0" / "0.png").write_bytes(encode_png(image))  # other bytes, other size
    identity.cache_clear()
    outcome = run_model(settings, job_id, MODELS[0])
    assert outcome["status"] == "failed" and "changed after the job was submitted" in outcome["error"]
    assert finalise_job(settings, job_id) == "failed"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and "changed after the job was submitted" in job["error"]


def test_a_corrupt_image_found_by_the_worker_ends_the_job_failed_with_its_name(settings):
    """The request reads no image; a bad one is found by the task, which fails the model with
    the image's name, and the job ends (not stuck)."""
    root = _folder(settings.data_roots[0] / "set")
    (root / "class1" / "0.png").write_bytes(b"not a png at all")
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    options = {**OPTIONS, "samples_per_class": 0}  # every image, the bad one included
    body = {"dataset": f"folder:{root}", "models": MODELS[:1], "scores": ["logme"], "options": options}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    outcome = run_model(settings, job_id, MODELS[0])
    assert outcome["status"] == "failed" and "class1/0.png" in outcome["error"]
    assert finalise_job(settings, job_id) == "failed"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and "class1/0.png is not a readable image" in job["error"]


def test_the_folder_fingerprint_is_the_manifest_hash_as_before(tmp_path):
    """The identity is computed once now, not differently: sha256 over CLASS/FILE and each
    file's sha256, classes and files by name (results stored before stay comparable)."""
    import hashlib

    from zoorank.data import load_dataset

    root = _folder(tmp_path / "set")
    (root / ".hidden").mkdir()
    (root / "class0" / "notes.txt").write_text("not an image")
    expected = hashlib.sha256()
    for path in sorted(root.glob("class*/*.png")):
        expected.update(f"{path.parent.name}/{path.name}\0".encode())
        expected.update(hashlib.sha256(path.read_bytes()).digest())
    identity.cache_clear()
    dataset = load_dataset(f"folder:{root}", data_roots=[tmp_path])
    assert dataset.fingerprint == expected.hexdigest()
    assert dataset.class_names == ["class0", "class1"] and dataset.labels.tolist() == [0] * 6 + [1] * 6


def test_an_edited_file_alone_is_hashed_again(tmp_path, monkeypatch):
    from zoorank.data import load_dataset

    root = _folder(tmp_path / "set")
    identity.cache_clear()
    first = load_dataset(f"folder:{root}", data_roots=[tmp_path])
    (root / "class1" / "3.png").write_bytes(encode_png(np.zeros((9, 9, 3), dtype=np.uint8)))
    spy = OpenSpy(monkeypatch, root)
    second = load_dataset(f"folder:{root}", data_roots=[tmp_path])
    assert dict(spy.opens) == {str(root / "class1" / "3.png"): 1}
    assert second.fingerprint != first.fingerprint and second.identity.version != first.identity.version


def test_an_npz_rewritten_after_submission_fails_the_model(settings):
    root = settings.data_roots[0]
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 6)
    np.savez(root / "set.npz", x=rng.integers(0, 255, (12, 8, 8), dtype=np.uint8), y=labels)
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    body = {
        "dataset": f"npz:{root / 'set.npz'}",
        "models": MODELS[:1],
        "scores": ["logme"],
        "options": OPTIONS,
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    np.savez(root / "set.npz", x=rng.integers(0, 255, (12, 8, 8), dtype=np.uint8), y=labels)
    identity.cache_clear()
    outcome = run_model(settings, job_id, MODELS[0])
    assert outcome["status"] == "failed" and "changed after the job was submitted" in outcome["error"]


def test_a_cached_upload_is_not_listed_again(tmp_path, monkeypatch):
    """An upload is named by its archive's hash and written once: its id is its version, so
    the request does not walk its (up to 100 000) files once its index is cached."""
    import os

    from zoorank.data import load_dataset

    upload_id = "ab" * 16
    _folder(tmp_path / "uploads" / upload_id)
    identity.cache_clear()
    first = load_dataset(f"upload:{upload_id}", upload_dir=tmp_path / "uploads")
    listed: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path):
        listed.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    again = load_dataset(f"upload:{upload_id}", upload_dir=tmp_path / "uploads")
    assert listed == [] and again.fingerprint == first.fingerprint
    assert again.identity.version == upload_id


def test_a_single_npy_array_is_refused_as_a_dataset_everywhere(settings, tmp_path):
    from typer.testing import CliRunner

    from zoorank.cli import load_commands
    from zoorank.data import load_dataset
    from zoorank.errors import InvalidInputError

    root = settings.data_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "X.npy", np.zeros((4, 8, 8), dtype=np.uint8))
    ref = f"npz:{root / 'X.npy'}"
    with pytest.raises(InvalidInputError) as err:  # was a TypeError from inside numpy
        load_dataset(ref, data_roots=[root])
    assert err.value.field == "dataset" and "not named arrays" in str(err.value)
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    response = client.post("/v1/jobs", json={"dataset": ref, "models": ["resnet10t@random"]})
    assert response.status_code == 422, response.text  # was a plain-text 500
    assert response.json()["field"] == "dataset"
    result = CliRunner().invoke(
        load_commands(), ["rank", "--dataset", ref, "--models", "resnet10t@random", "--data-root", str(root)]
    )
    assert result.exit_code == 2 and "not named arrays" in result.output, result.output  # was exit 0
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("mode", "suffix", "pixel", "expected"),
    [
        ("1", ".png", 1, 255),
        ("L", ".png", 100, 100),
        ("LA", ".png", (100, 255), 100),
        ("P", ".png", 7, None),  # a palette index: the palette's colour (checked below)
        ("RGB", ".png", (100, 100, 100), 100),
        ("RGBA", ".png", (100, 100, 100, 255), 100),
        ("CMYK", ".jpg", (0, 0, 0, 155), 100),
        ("I;16", ".png", 32768, 128),  # 16-bit grey: was clipped to 255 (a white blob)
        ("I;16", ".png", 25700, 100),
        ("I", ".tif", 25700, 100),  # 32-bit integers holding 16-bit values
        ("I", ".tif", 100, 100),  # ... or 8-bit ones
        ("F", ".tif", 100 / 255, 100),  # floats in [0, 1]
        ("F", ".tif", 100.0, 100),  # floats in [0, 255]
    ],
)
def test_every_pil_mode_reads_at_its_bit_depth(tmp_path, mode, suffix, pixel, expected):
    from PIL import Image

    from zoorank.data.datasets import _load_image

    image = Image.new(mode, (16, 16), pixel)
    if mode == "P":
        image.putpalette([(i * 37) % 256 for i in range(768)])
        expected = (7 * 3 * 37) % 256  # the red entry of palette colour 7 (grey tests read channel 0)
    path = tmp_path / f"x{suffix}"
    image.save(path)
    assert Image.open(path).mode == mode or mode == "CMYK"
    rgb = _load_image(path)
    assert rgb.shape[-1] == 3 and rgb.dtype == np.uint8
    assert abs(int(rgb[8, 8, 0]) - expected) <= 2, (mode, rgb[8, 8])


@pytest.mark.parametrize(("mode", "pixel"), [("F", 1000.0), ("F", -1.0), ("I", 70000)])
def test_pixel_values_outside_their_mode_are_refused(tmp_path, mode, pixel):
    from PIL import Image

    from zoorank.data.datasets import _load_image
    from zoorank.errors import InvalidInputError

    path = tmp_path / "x.tif"
    Image.new(mode, (4, 4), pixel).save(path)
    with pytest.raises(InvalidInputError) as err:
        _load_image(path)
    assert err.value.field == "dataset" and "save it as an 8- or 16-bit image" in str(err.value)


@pytest.mark.slow
def test_a_folder_changed_after_a_validation_was_submitted_fails_the_validation_with_the_reason(settings):
    """Validation jobs check the data against the identity stored at submission, as ranking
    jobs do (before, the worker hashed the folder again and validated whatever it found)."""
    root = _folder(settings.data_roots[0] / "set", per_class=12)
    client = TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))
    body = {
        "dataset": f"folder:{root}",
        "models": MODELS[:1],
        "scores": [],
        "mode": "linear",
        "seeds": [0],
        "settings": {"train_per_class": 4, "val_per_class": 2, "test_per_class": 4, "input_size": 16},
    }
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    (root / "class0" / "0.png").write_bytes(encode_png(np.full((8, 8, 3), 7, dtype=np.uint8)))
    identity.cache_clear()
    assert run_validation(settings, job_id) == "failed"
    job = client.get(f"/v1/validations/{job_id}").json()
    assert job["status"] == "failed" and "changed after the job was submitted" in job["error"]
