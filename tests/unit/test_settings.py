"""Settings read in one place: the CLI client's server and key (:class:`ClientSettings`) and the
device (:func:`default_device`), which ``zoorank rank``, ``explain``, validation jobs and the
service all follow."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from zoorank.cli import load_commands
from zoorank.errors import InvalidInputError
from zoorank.features.extract import resolve_device
from zoorank.rank import RankOptions
from zoorank.settings import ClientSettings, CoreSettings, default_device

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULES = {"zoorank/settings.py", "app/settings.py"}
# Reading a ZOORANK_ variable, not writing one (entry points may set the environment of the
# processes they start).
ENV_READS = re.compile(
    r"""environ\.get\(\s*["']ZOORANK_|getenv\(\s*["']ZOORANK_|envvar\s*=\s*["']ZOORANK_"""
    r"""|environ\[\s*["']ZOORANK_\w+["']\s*\](?!\s*=[^=])"""
)
BAD_DEVICE = "ZOORANK_DEVICE must be auto, cpu or cuda, got 'gpu'"
RANK = ["--dataset", "builtin:digits", "--samples-per-class", "8", "--input-size", "32"]


def test_zoorank_variables_are_read_by_the_settings_modules_only() -> None:
    """ZOORANK_API_KEY and ZOORANK_SERVER were read in zoorank/cli.py, by hand and by typer."""
    found = []
    for folder in ("zoorank", "app", "workers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name not in SETTINGS_MODULES:
                found += [f"{name}: {m.group(0)}" for m in ENV_READS.finditer(path.read_text())]
    assert found == []


def test_client_settings_read_server_and_key_and_the_option_wins(monkeypatch) -> None:
    monkeypatch.setenv("ZOORANK_SERVER", "http://zoo.example:9000/")
    monkeypatch.setenv("ZOORANK_API_KEY", "zrk_test")
    settings = ClientSettings.load()
    assert settings.server == "http://zoo.example:9000"
    assert settings.api_key.get_secret_value() == "zrk_test" and "zrk_test" not in repr(settings)
    assert ClientSettings.load("https://other.example").server == "https://other.example"
    monkeypatch.setenv("ZOORANK_SERVER", "zoo.example:9000")
    with pytest.raises(ValidationError, match="ZOORANK_SERVER must be a URL"):
        ClientSettings.load()
    monkeypatch.delenv("ZOORANK_SERVER")
    monkeypatch.delenv("ZOORANK_API_KEY")
    assert ClientSettings.load().server == "http://127.0.0.1:8000"
    assert ClientSettings.load().api_key.get_secret_value() == ""


@pytest.mark.slow
def test_the_cli_client_sends_zoorank_api_key_to_zoorank_server(tmp_path, monkeypatch) -> None:
    from zoorank_app.keys import hash_key
    from zoorank_app.main import create_app
    from zoorank_app.settings import Settings

    from tests.service_harness import serve_in_thread

    key = "zrk_settings-test-key-abcdefghij0123456789"
    settings = Settings(
        var_dir=tmp_path / "var", sweep_interval=0, api_keys=[hash_key(key)], protect_reads=True
    )
    with serve_in_thread(
        create_app(settings, dispatch=lambda job, models: [], revoke=lambda ids: None)
    ) as base:
        monkeypatch.setenv("ZOORANK_SERVER", base)
        refused = CliRunner().invoke(load_commands(), ["jobs", "list"])
        assert refused.exit_code == 2 and "401" in refused.output, refused.output
        monkeypatch.setenv("ZOORANK_API_KEY", key)
        listed = CliRunner().invoke(load_commands(), ["jobs", "list"])
        assert listed.exit_code == 0, listed.output


# -- ZOORANK_DEVICE -------------------------------------------------------------------------


@pytest.fixture
def gpu_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that says it has a GPU (there is none): ``auto`` would choose CUDA and fail."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_follows_zoorank_device(monkeypatch, gpu_visible) -> None:
    monkeypatch.delenv("ZOORANK_DEVICE", raising=False)
    assert default_device() == "auto" and resolve_device("auto").type == "cuda"
    monkeypatch.setenv("ZOORANK_DEVICE", "cpu")
    assert default_device() == "cpu" and resolve_device("auto").type == "cpu"
    assert CoreSettings().device == "cpu"
    monkeypatch.setenv("ZOORANK_DEVICE", "cuda")
    assert resolve_device("cpu").type == "cpu"  # a request that names its device keeps it


def test_a_bad_zoorank_device_is_refused_naming_the_variable_everywhere(monkeypatch) -> None:
    monkeypatch.setenv("ZOORANK_DEVICE", "gpu")
    with pytest.raises(InvalidInputError, match=BAD_DEVICE):
        default_device()
    with pytest.raises(InvalidInputError, match=BAD_DEVICE):
        RankOptions().validate()  # rank, explain and validate check their options first
    RankOptions(device="cpu").validate()  # named explicitly: the variable is not read
    with pytest.raises(ValidationError, match=BAD_DEVICE):
        CoreSettings()  # the service's settings, by the same rule
    from zoorank.groundtruth import validate

    with pytest.raises(InvalidInputError, match=BAD_DEVICE):
        validate("builtin:digits", ["mobilenetv2_100@random"], scores=[])
    for command in (["rank", *RANK], ["explain", *RANK, "--model", "mobilenetv2_100@random"]):
        result = CliRunner().invoke(load_commands(), command)
        assert result.exit_code == 2 and BAD_DEVICE in result.output, result.output


@pytest.mark.slow
def test_zoorank_rank_and_explain_run_on_the_device_zoorank_device_names(tmp_path, monkeypatch, gpu_visible):
    """On a machine that says it has a GPU, ZOORANK_DEVICE=cpu keeps the work on the CPU (it
    was ignored: auto chose CUDA and every model failed)."""
    monkeypatch.setenv("ZOORANK_DEVICE", "cpu")
    common = [*RANK, "--cache-dir", str(tmp_path)]
    ranked = CliRunner().invoke(
        load_commands(),
        ["rank", *common, "--models", "mobilenetv2_100@random", "--scores", "logme", "--json"],
    )
    assert ranked.exit_code == 0, ranked.output
    explained = CliRunner().invoke(load_commands(), ["explain", *common, "--model", "mobilenetv2_100@random"])
    assert explained.exit_code == 0, explained.output


@pytest.mark.slow
def test_a_validation_job_trains_on_the_services_device(tmp_path, gpu_visible) -> None:
    """The worker's settings.device (ZOORANK_DEVICE) for the training and the scores, as for
    ranking jobs; it was ignored (auto: CUDA here, and the job failed)."""
    from fastapi.testclient import TestClient
    from zoorank_app.main import create_app
    from zoorank_app.services.validations import run_validation
    from zoorank_app.settings import Settings

    settings = Settings(var_dir=tmp_path / "var", sweep_interval=0, device="cpu")
    client = TestClient(create_app(settings, dispatch=lambda job, models: [], revoke=lambda ids: None))
    body = {
        "dataset": "builtin:digits",
        "models": ["mobilenetv2_100@random"],
        "scores": ["logme"],
        "mode": "linear",
        "seeds": [0],
        "settings": {"train_per_class": 4, "val_per_class": 2, "test_per_class": 4, "input_size": 16},
    }
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert run_validation(settings, job_id) == "succeeded"
    job = client.get(f"/v1/validations/{job_id}").json()
    assert np.isfinite(job["ranking"]["ground_truth"][0]["accuracy"])
