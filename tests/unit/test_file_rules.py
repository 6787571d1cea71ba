"""One rule for every path a request names, whoever reads it: the library, the CLI and the API
refuse a weight file outside the data roots alike, accept one inside them alike, and the CLI reads
``upload:ID`` from the server's upload folder (the same VAR_DIR)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from zoorank_app.settings import Settings

from tests.service_harness import inline_client, zip_archive
from zoorank.cli import load_commands
from zoorank.data.datasets import encode_png
from zoorank.errors import InvalidInputError
from zoorank.rank import resolve_models

runner = CliRunner()
cli = load_commands()
SMALL = ["--scores", "logme", "--samples-per-class", "5", "--input-size", "32"]


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    var, data, outside = tmp_path / "var", tmp_path / "data", tmp_path / "outside"
    for folder in (var, data, outside):
        folder.mkdir()
    # the CLI reads the same settings as the server
    monkeypatch.setenv("ZOORANK_VAR_DIR", str(var))
    monkeypatch.setenv("ZOORANK_DATA_ROOTS", str(data))
    return {"var": var, "data": data, "outside": outside}


def _library(model: str, data: Path) -> str:
    try:
        resolve_models([model], data_roots=[data])
    except InvalidInputError as exc:
        return f"refused: {exc}"
    return "accepted"


def _cli(model: str) -> str:
    # A weight file that is only bytes: accepted means it got as far as loading (the model fails,
    # exit 1); refused means the request was refused before any work (exit 2).
    result = runner.invoke(cli, ["rank", "--dataset", "builtin:digits", "--models", model, *SMALL])
    return {2: f"refused: {result.output}", 1: "accepted"}.get(result.exit_code, result.output)


def _http(model: str, settings: Settings) -> str:
    with inline_client(settings, run_jobs=False) as client:
        answer = client.post(
            "/v1/jobs",
            json={"dataset": "builtin:digits", "models": [model], "scores": ["logme"]},
        )
    return {422: f"refused: {answer.text}", 202: "accepted"}.get(answer.status_code, answer.text)


@pytest.mark.parametrize("where", ["outside", "data"])
def test_a_weight_file_is_judged_alike_by_the_library_the_cli_and_the_api(roots, where):
    weights = roots[where] / "w.pth"
    weights.write_bytes(b"not a checkpoint")
    model = f"resnet10t@file:{weights}"
    settings = Settings(var_dir=roots["var"], data_roots=[roots["data"]])
    answers = {"library": _library(model, roots["data"]), "cli": _cli(model), "http": _http(model, settings)}
    if where == "outside":
        assert all(
            a.startswith("refused") and "outside the allowed data roots" in a for a in answers.values()
        ), answers
    else:
        assert answers == {"library": "accepted", "cli": "accepted", "http": "accepted"}


def test_the_library_refuses_a_weight_file_with_no_data_roots():
    with pytest.raises(InvalidInputError, match="no data roots"):
        resolve_models(["test_resnet@file:/etc/passwd.pth"])


def test_the_cli_reads_an_upload_the_server_stored(roots):
    settings = Settings(var_dir=roots["var"], data_roots=[roots["data"]])
    rng = np.random.default_rng(0)
    entries = {
        f"set/{name}/{i}.png": encode_png(np.clip(rng.normal(v, 20, (16, 16, 3)), 0, 255).astype(np.uint8))
        for name, v in (("cat", 60), ("dog", 200))
        for i in range(6)
    }
    with inline_client(settings, run_jobs=False) as client:
        uploaded = client.post(
            "/v1/datasets", files={"file": ("set.zip", zip_archive(entries), "application/zip")}
        )
    assert uploaded.status_code in (200, 201), uploaded.text
    ref = uploaded.json()["ref"]
    result = runner.invoke(
        cli, ["rank", "--dataset", ref, "--models", "mobilenetv2_100@random", "--json", *SMALL]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset"] == ref
