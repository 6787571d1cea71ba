"""The CLI: catalogues, `score` on arrays, `rank --json`, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from zoorank.cli import load_commands

app = load_commands()

runner = CliRunner()


def test_catalogues_as_json():
    scores = json.loads(runner.invoke(app, ["scores", "list", "--json"]).stdout)
    assert {"logme", "linear_probe"} <= {s["name"] for s in scores}
    zoo = json.loads(runner.invoke(app, ["zoo", "list", "--json"]).stdout)
    assert len(zoo) == 8
    datasets = json.loads(runner.invoke(app, ["datasets", "list", "--json"]).stdout)
    assert datasets[0]["ref"] == "builtin:digits"


def test_score_on_arrays(tmp_path):
    # Two classes, features = one-hot of the label: the linear probe is perfect.
    y = np.repeat([0, 1], 15)
    x = np.eye(2)[y] + 0.01 * np.random.default_rng(0).normal(size=(30, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    result = runner.invoke(
        app,
        [
            "score",
            "linear_probe",
            "--features",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--param",
            "folds=3",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["score"] == "linear_probe" and out["value"] == 1.0 and len(out["fold_accuracies"]) == 3


def test_score_errors_are_clear(tmp_path):
    np.save(tmp_path / "y.npy", np.repeat([0, 1], 5))
    np.save(tmp_path / "x.npy", np.full((10, 3), np.nan))
    result = runner.invoke(
        app,
        [
            "score",
            "logme",
            "--features",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
        ],
    )
    assert result.exit_code == 2 and "non-finite" in result.output
    result = runner.invoke(app, ["score", "logme", "--labels", str(tmp_path / "y.npy")])
    assert result.exit_code == 2 and "needs features" in result.output
    result = runner.invoke(app, ["score", "nope", "--labels", str(tmp_path / "y.npy")])
    assert result.exit_code == 2 and "unknown score" in result.output


@pytest.mark.slow
def test_rank_json_in_process(tmp_path):
    result = runner.invoke(
        app,
        [
            "rank",
            "--dataset",
            "builtin:digits",
            "--models",
            "mobilenetv2_100,mobilenetv2_100@random",
            "--scores",
            "logme",
            "--samples-per-class",
            "8",
            "--input-size",
            "32",
            "--cache-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    ranking = json.loads(result.stdout)
    logme = {r["model"]: r["scores"]["logme"]["value"] for r in ranking["results"]}
    assert ranking["ranking"]["by_score"]["logme"] == sorted(logme, key=logme.get, reverse=True)
    assert len(ranking["sample_ids"]) == 80
    bad = runner.invoke(app, ["rank", "--dataset", "builtin:none"])
    assert bad.exit_code == 2 and "unknown builtin dataset" in bad.output


def test_score_betti_decay_on_taps_file(tmp_path):
    """`zoorank score betti_decay --taps T.npz`: taps in file order; JSON has value and omega.
    Each tap is one solid block per image, so every Betti sum is β0 = 1 and Ω = (1, 1, 1, 1);
    a flat profile has θ = 0."""
    y = np.repeat([0, 1], 3)
    taps = {f"t{i}": np.zeros((6, 2, 4, 4), dtype=np.float32) for i in range(4)}
    np.savez(tmp_path / "taps.npz", **taps)
    np.save(tmp_path / "y.npy", y)
    result = runner.invoke(
        app,
        ["score", "betti_decay", "--taps", str(tmp_path / "taps.npz"), "--labels", str(tmp_path / "y.npy")],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["omega"] == [1.0, 1.0, 1.0, 1.0]
    assert out["value"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_explain_in_process_table_json_and_errors(tmp_path):
    common = ["--samples-per-class", "10", "--input-size", "32", "--cache-dir", str(tmp_path)]
    table = runner.invoke(
        app, ["explain", "--dataset", "builtin:digits", "--model", "mobilenetv2_100", *common]
    )
    assert table.exit_code == 0, table.output
    assert "layer_tree_fidelity = " in table.output and "tree (full tree: depth" in table.output
    assert "is driven by feature" in table.output
    base = ["explain", "--dataset", "builtin:digits", "--model", "mobilenetv2_100", *common]
    as_json = runner.invoke(app, [*base, "--json", "--param", "width=8", "--param", "saliency_samples=0"])
    found = json.loads(as_json.stdout)
    assert found["params"]["width"] == 8 and "saliency" not in found["details"]
    assert [layer["width"] for layer in found["details"]["layers"]] == [8, 8]
    assert found["value"] == max(found["details"]["kappa_at_budget"])
    unknown = runner.invoke(app, ["explain", "--dataset", "builtin:digits", "--model", "nope", *common])
    assert unknown.exit_code == 1 and "unknown model 'nope'" in unknown.output
    bad_param = runner.invoke(app, [*base, "--param", "width=wide"])
    assert bad_param.exit_code == 1 and "'width' must be int" in bad_param.output


def test_rank_exit_codes_empty_lists_and_all_failed(tmp_path):
    common = ["--samples-per-class", "8", "--input-size", "32", "--cache-dir", str(tmp_path)]
    empty_models = runner.invoke(app, ["rank", "--dataset", "builtin:digits", "--models", "", *common])
    assert empty_models.exit_code == 2 and "model list is empty" in empty_models.output
    empty_scores = runner.invoke(
        app, ["rank", "--dataset", "builtin:digits", "--models", "mobilenetv2_100", "--scores", "", *common]
    )
    assert empty_scores.exit_code == 2 and "score list is empty" in empty_scores.output
    # A model whose weights cannot be had offline: refused before any work, naming the setting.
    offline = runner.invoke(
        app,
        ["rank", "--dataset", "builtin:digits", "--models", "resnet18@timm", "--scores", "logme", *common],
    )
    assert offline.exit_code == 2 and "offline" in offline.output, offline.output
    # A weight file that does not load: every model failed -> exit 1, reason said.
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    model = f"resnet10t@file:{broken}"
    failed = runner.invoke(
        app,
        [
            "rank",
            "--dataset",
            "builtin:digits",
            "--models",
            model,
            "--scores",
            "logme",
            "--data-root",
            str(tmp_path),
            *common,
        ],
    )
    assert failed.exit_code == 1, failed.output
    assert "every model failed (1 of 1)" in failed.output and f"{model} failed:" in failed.output
    assert "Traceback" not in failed.output


@pytest.fixture
def server(tmp_path):
    """A real HTTP server (uvicorn in a thread) whose jobs run inline at submission."""
    from zoorank_app.main import create_app
    from zoorank_app.services.runner import finalise_job, run_model
    from zoorank_app.settings import Settings

    from tests.service_harness import serve_in_thread

    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)

    def inline(job_id: str, models: list[str]) -> list[str]:
        for model in models:
            run_model(settings, job_id, model)
        finalise_job(settings, job_id)
        return []

    with serve_in_thread(create_app(settings, dispatch=inline, revoke=lambda ids: None)) as base:
        yield base


def test_client_commands_against_a_running_server(server):
    common = ["--server", server]
    sizes = ["--samples-per-class", "8", "--input-size", "32"]
    models = ["--models", "mobilenetv2_100,mobilenetv2_100@random", "--scores", "logme"]
    submitted = runner.invoke(
        app, ["submit", "--dataset", "builtin:digits", *models, *sizes, "--wait", *common]
    )
    assert submitted.exit_code == 0, submitted.output
    assert "ranked by" in submitted.output and "mobilenetv2_100@random" in submitted.output
    listing = json.loads(runner.invoke(app, ["jobs", "list", "--json", *common]).stdout)
    job_id = listing["data"][0]["id"]
    shown = json.loads(runner.invoke(app, ["jobs", "show", job_id, "--json", *common]).stdout)
    assert shown["status"] == "succeeded" and len(shown["results"]) == 2
    ended = runner.invoke(app, ["jobs", "cancel", job_id, *common])
    assert ended.exit_code == 2 and "409" in ended.output and "already ended" in ended.output
    deleted = runner.invoke(app, ["jobs", "delete", job_id, *common])
    assert deleted.exit_code == 0 and f"job {job_id} deleted" in deleted.output
    gone = runner.invoke(app, ["jobs", "show", job_id, *common])
    assert gone.exit_code == 2 and "404" in gone.output
    again = runner.invoke(app, ["jobs", "delete", job_id, *common])
    assert again.exit_code == 2 and "404" in again.output
    bad = runner.invoke(app, ["submit", "--dataset", "builtin:nope", *common])
    assert bad.exit_code == 2 and "unknown builtin dataset" in bad.output and "(field dataset)" in bad.output


def test_worker_concurrency_is_one_number_for_celery_and_torch(tmp_path, monkeypatch):
    import os

    import torch
    from zoorank_app.settings import get_settings
    from zoorank_workers import celery_app

    seen: list[list[str]] = []
    monkeypatch.setenv("ZOORANK_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(os, "execvp", lambda file, argv: seen.append(argv))
    get_settings.cache_clear()
    threads = torch.get_num_threads()
    try:
        result = runner.invoke(app, ["worker", "--concurrency", "2"])
        assert result.exit_code == 0, result.output
        assert "--concurrency=2" in seen[0] and os.environ["ZOORANK_WORKER_CONCURRENCY"] == "2"
        get_settings.cache_clear()
        celery_app._torch_threads()  # what each pool process runs at start
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 1) // 2)
    finally:
        os.environ.pop("ZOORANK_WORKER_CONCURRENCY", None)
        get_settings.cache_clear()
        torch.set_num_threads(threads)


def test_the_cli_reads_the_same_settings_as_the_service(tmp_path, monkeypatch):
    # One settings object: the cache goes under ZOORANK_VAR_DIR (not ./var/cache wherever the
    # command runs) and the data roots default to VAR_DIR/data, as for the server.
    var, cwd, mine = tmp_path / "var", tmp_path / "cwd", tmp_path / "mine"
    cwd.mkdir()
    mine.mkdir()
    rng = np.random.default_rng(0)
    np.savez(mine / "set.npz", x=rng.integers(0, 255, (24, 12, 12), dtype=np.uint8), y=np.repeat([0, 1], 12))
    monkeypatch.setenv("ZOORANK_VAR_DIR", str(var))
    monkeypatch.delenv("ZOORANK_DATA_ROOTS", raising=False)
    monkeypatch.delenv("ZOORANK_CACHE_DIR", raising=False)
    monkeypatch.chdir(cwd)
    args = ["rank", "--dataset", f"npz:{mine / 'set.npz'}", "--models", "mobilenetv2_100@random"]
    args += ["--scores", "logme", "--samples-per-class", "6", "--input-size", "32", "--json"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert str(var / "data") in refused.output and "--data-root" in refused.output
    granted = runner.invoke(app, [*args, "--data-root", str(mine)])
    assert granted.exit_code == 0, granted.output
    assert any((var / "cache").rglob("*")) and not (cwd / "var").exists()


OFFLINE_PROBE = """
import os, sys
import zoorank.rank, zoorank.zoo.load
assert "HF_HUB_OFFLINE" not in os.environ  # importing the library sets nothing
from zoorank.cli import main
sys.argv = ["zoorank", "zoo", "list", "--json"]
try:
    main()
except SystemExit:
    pass
print(os.environ.get("HF_HUB_OFFLINE"))
"""


def test_offline_is_a_setting_applied_at_the_entry_point():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "ZOORANK_OFFLINE")}
    for offline, expected in (("0", "None"), ("1", "1")):
        run = subprocess.run(
            [sys.executable, "-c", OFFLINE_PROBE],
            env={**env, "ZOORANK_OFFLINE": offline},
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().splitlines()[-1] == expected


def test_worker_queues_by_resource_and_a_refused_setting_is_a_message(tmp_path, monkeypatch):
    import os

    from zoorank_app.settings import get_settings

    seen: list[list[str]] = []
    monkeypatch.setenv("ZOORANK_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(os, "execvp", lambda file, argv: seen.append(argv))
    get_settings.cache_clear()
    try:
        default = runner.invoke(app, ["worker"])
        gpu = runner.invoke(app, ["worker", "--queues", "gpu"])
        bad = runner.invoke(app, ["worker", "--queues", "gpu,tpu"])
    finally:
        os.environ.pop("ZOORANK_WORKER_QUEUES", None)
        os.environ.pop("ZOORANK_WORKER_CONCURRENCY", None)
        get_settings.cache_clear()
    assert default.exit_code == gpu.exit_code == 0, (default.output, gpu.output)
    queues = [argv[argv.index("-Q") + 1] for argv in seen]
    assert queues == ["gpu,cpu", "gpu"]  # one worker does everything unless told
    assert bad.exit_code == 2 and "ZOORANK_WORKER_QUEUES" in bad.output and "Traceback" not in bad.output


def test_the_installed_command_has_the_service_and_bench_commands(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = shutil.which("zoorank", path=str(Path(sys.executable).parent))
    assert script is not None
    for group, names in (
        ([], {"serve", "worker", "run", "demo", "db", "keys", "cache"}),
        (["bench"], {"ranking", "heldout", "load"}),
    ):
        shown = subprocess.run([script, *group, "--help"], cwd=tmp_path, capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        listed = {
            line.split()[1]
            for line in shown.stdout.splitlines()
            if line.startswith("│ ") and len(line.split()) > 1
        }
        assert names <= listed, (names - listed, shown.stdout)


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list"],
        ["jobs", "show", "0123456789abcdef"],
        ["submit", "--dataset", "builtin:digits"],
        ["confirm", "0123456789abcdef", "--dry-run"],
    ],
)
def test_remote_commands_without_a_server_say_so_in_one_line(argv):
    import socket

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(load_commands(), [*argv, "--server", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the zoorank server" in lines[0] and "zoorank run" in lines[0], (
        lines
    )
    no_scheme = runner.invoke(load_commands(), [*argv, "--server", f"127.0.0.1:{port}"])
    assert no_scheme.exit_code == 2 and "must be a URL starting with http://" in no_scheme.output
    assert len(no_scheme.output.strip().splitlines()) == 1, no_scheme.output


def test_a_broken_command_package_fails_loudly_an_absent_one_is_skipped(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    import zoorank.cli as cli

    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text(
        "import not_installed_xyz\n\ndef register(app):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    absent = EntryPoint(name="absent", value="absentpkg_xyz.cli:register", group=cli.COMMANDS_GROUP)
    broken = EntryPoint(name="broken", value="brokenpkg:register", group=cli.COMMANDS_GROUP)
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [absent])
    cli.load_commands()  # the entry's own package is not installed: nothing added, no error
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [broken])
    with pytest.raises(ModuleNotFoundError, match="not_installed_xyz"):  # was swallowed: "No such command"
        cli.load_commands()


def test_serve_takes_its_api_processes_from_the_option_or_the_setting(tmp_path, monkeypatch):
    from zoorank_app import service_runner
    from zoorank_app.settings import get_settings

    seen: list[int] = []
    monkeypatch.setenv("ZOORANK_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(service_runner, "serve", lambda settings, host, port, workers: seen.append(workers))
    get_settings.cache_clear()
    try:
        assert runner.invoke(app, ["serve"]).exit_code == 0 and seen == [1]
        assert runner.invoke(app, ["serve", "--workers", "3"]).exit_code == 0 and seen[-1] == 3
        monkeypatch.setenv("ZOORANK_API_WORKERS", "2")
        get_settings.cache_clear()
        assert runner.invoke(app, ["serve"]).exit_code == 0 and seen[-1] == 2
        refused = runner.invoke(app, ["serve", "--workers", "0"])
        assert refused.exit_code == 2 and "--workers" in refused.output
        monkeypatch.setenv("ZOORANK_API_WORKERS", "0")
        get_settings.cache_clear()
        refused = runner.invoke(app, ["serve"])
        assert refused.exit_code == 2 and "ZOORANK_API_WORKERS" in refused.output
    finally:
        get_settings.cache_clear()
