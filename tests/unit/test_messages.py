"""Messages that point at the right thing (issue 15): each names the input to fix, in the
user's terms (a folder name, not a class number; the body, not a character offset)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from zoorank.cli import load_commands
from zoorank.data.subsample import check_class_counts
from zoorank.errors import InvalidInputError

runner = CliRunner()


def test_too_small_classes_are_named_by_their_folder():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 6)
    with pytest.raises(InvalidInputError, match=r"'zebra' \(2\) have fewer than 5") as caught:
        check_class_counts(labels, class_names=["ant", "zebra", "owl"])
    assert caught.value.field == "dataset"


def test_a_body_that_is_not_json_is_the_body_s_fault(tmp_path):
    client = TestClient(
        create_app(Settings(var_dir=tmp_path / "var"), dispatch=lambda j, m: [], revoke=lambda i: None)
    )
    response = client.post(
        "/v1/jobs",
        content=b'{"dataset": "builtin:digits", "models": [}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["field"] == "body" and "not valid JSON at character 41" in problem["detail"]


def test_score_names_what_is_wrong_with_the_files_it_was_given(tmp_path):
    app = load_commands()
    text = tmp_path / "x.npy"
    text.write_text("1 2 3\n")
    np.save(tmp_path / "y.npy", np.repeat([0, 1], 25))
    not_npy = runner.invoke(
        app, ["score", "logme", "--features", str(text), "--labels", str(tmp_path / "y.npy")]
    )
    assert (
        not_npy.exit_code == 2 and "is not a .npy file" in not_npy.output and "pickle" not in not_npy.output
    )
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", **{f"layer{i}": rng.random((40, 4, 6, 6)) for i in range(5)})
    short = runner.invoke(
        app, ["score", "betti_decay", "--taps", str(tmp_path / "t.npz"), "--labels", str(tmp_path / "y.npy")]
    )
    assert short.exit_code == 2 and "the taps hold 40 images each but there are 50 labels" in short.output


def test_a_home_folder_that_does_not_exist_is_a_refusal_not_a_crash(tmp_path, monkeypatch):
    from zoorank.data.refs import resolve_under_roots

    with pytest.raises(InvalidInputError) as caught:
        resolve_under_roots("~no-such-user-zr/x.npz", [tmp_path], field="dataset")
    assert caught.value.field == "dataset"
    monkeypatch.delenv("HOME", raising=False)
    with pytest.raises(InvalidInputError):
        resolve_under_roots("~/x.npz", [tmp_path], field="dataset")
