"""Only entry points change the process environment: building the API (``create_app``) and
importing a benchmark module leave ``os.environ`` as they found it (docs/design.md §3)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests.unit.test_api import assert_problem

# Every .py file under benchmarks/ (benchmarks/betti holds scripts, not a package), each
# imported by its module name. torch (through timm) and scikit-learn set variables of their own
# when imported: they are loaded first, not ours to judge.
IMPORT_EVERY_BENCHMARK = """
import importlib, os
from pathlib import Path
import sklearn, timm
import zoorank_bench
root = Path(zoorank_bench.__file__).parent
names = sorted(
    ".".join(("zoorank_bench", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
    for path in root.rglob("*.py")
    if not {"results", "cache"} & set(path.relative_to(root).parts)
)
before = dict(os.environ)
changed = []
for name in names:
    importlib.import_module(name)
    after = dict(os.environ)
    if after != before:
        keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        changed.append(f"{name}: {', '.join(keys)}")
        os.environ.clear()
        os.environ.update(before)  # so that the next module is judged on its own
    print(name)
print("CHANGED", changed)
"""


@pytest.mark.slow
def test_create_app_leaves_the_environment_unchanged_and_passes_offline_explicitly(tmp_path, monkeypatch):
    """It set HF_HUB_OFFLINE for its whole process; ZOORANK_OFFLINE still refuses hub weights."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hub"))  # no cached copy
    import timm  # noqa: F401  (torch sets TORCHINDUCTOR_CACHE_DIR when timm imports it)

    before = dict(os.environ)
    settings = Settings(var_dir=tmp_path / "var", offline=True, sweep_interval=0)
    with TestClient(
        create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None)
    ) as client:
        body = {"dataset": "builtin:digits", "models": ["resnet18@timm"], "scores": ["nce"]}
        assert_problem(client.post("/v1/jobs", json=body), 422, "models", "ZOORANK_OFFLINE=1")
    assert dict(os.environ) == before


@pytest.mark.slow
def test_importing_a_benchmark_module_leaves_the_environment_unchanged() -> None:
    """Seven benchmark modules set HF_HUB_OFFLINE when imported; their entry points do now."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "ZOORANK_OFFLINE")}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_BENCHMARK], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = done.stdout.splitlines()
    assert {"zoorank_bench.ranking.__main__", "zoorank_bench.betti.twins"} <= set(imported)
    assert done.stdout.strip().splitlines()[-1] == "CHANGED []"
