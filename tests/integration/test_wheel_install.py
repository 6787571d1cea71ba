"""The packaged install, run the way the image runs it: the wheel built from this checkout goes
into a clean virtualenv outside the checkout, and the compose services' own commands
(`zoorank db upgrade`, `zoorank serve`, `zoorank worker --queues gpu` and `--queues cpu`) run
from another folder against PostgreSQL and Redis until a job finishes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_harness import REPO, free_port, postgres_schema, reachable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# What the wheel may put into site-packages: nothing generic such as `app` or `workers`.
IMPORT_NAMES = {"zoorank", "zoorank_app", "zoorank_workers", "zoorank_bench", "zoorank_migrations"}


def _build_wheel(out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO),
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("zoorank-*.whl")
    return wheel


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


@contextlib.contextmanager
def _running(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_wheel_installs_migrates_serves_and_finishes_a_job(tmp_path: Path):
    if not reachable(5432) or not reachable(6379):
        pytest.skip("PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not running")
    began = time.perf_counter()
    wheel = _build_wheel(tmp_path / "dist")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == IMPORT_NAMES
    assert any(n.startswith("zoorank_migrations/versions/0001") for n in zipfile.ZipFile(wheel).namelist())

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "--no-compile", str(wheel)], check=True, capture_output=True
    )
    installed = time.perf_counter() - began

    elsewhere = tmp_path / "elsewhere"  # no checkout here: only the installed package can answer
    elsewhere.mkdir()
    where = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import zoorank_app, zoorank_migrations; print(zoorank_migrations.__file__)",
        ],
        cwd=elsewhere,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(REPO)

    redis_db = 1 + int(uuid.uuid4().int % 14)
    port = free_port()
    with postgres_schema() as database_url:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ZOORANK_")},
            "ZOORANK_DATABASE_URL": database_url,
            "ZOORANK_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "ZOORANK_VAR_DIR": str(tmp_path / "var"),
            "ZOORANK_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
        }
        zoorank = str(venv / "bin" / "zoorank")
        upgrade = subprocess.run(
            [zoorank, "db", "upgrade"], env=env, cwd=elsewhere, capture_output=True, text=True
        )
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        try:
            with (
                _running(
                    [zoorank, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    cwd=elsewhere,
                    log=tmp_path / "serve.log",
                ),
                _running(
                    [zoorank, "worker", "--queues", "gpu", "--concurrency", "1"],
                    env=env,
                    cwd=elsewhere,
                    log=tmp_path / "gpu.log",
                ),
                _running(
                    [zoorank, "worker", "--queues", "cpu", "--concurrency", "1"],
                    env=env,
                    cwd=elsewhere,
                    log=tmp_path / "cpu.log",
                ),
            ):
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 60
                while True:
                    try:
                        _get(f"{base}/healthz")
                        break
                    except OSError:
                        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                        time.sleep(0.5)
                request = urllib.request.Request(
                    f"{base}/v1/jobs",
                    data=json.dumps(
                        {
                            "dataset": "builtin:digits",
                            "models": ["mobilenetv2_100@random"],
                            "scores": ["logme", "hscore"],
                            "options": {"samples_per_class": 10, "input_size": 32},
                        }
                    ).encode(),
                    headers={"content-type": "application/json"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=10) as answer:
                    job_id = json.load(answer)["id"]
                deadline = time.monotonic() + 240
                while (job := _get(f"{base}/v1/jobs/{job_id}"))["status"] not in {
                    "succeeded",
                    "partial",
                    "failed",
                }:
                    logs = "".join((tmp_path / f).read_text()[-2000:] for f in ("gpu.log", "cpu.log"))
                    assert time.monotonic() < deadline, logs
                    time.sleep(1)
                assert job["status"] == "succeeded", job
                assert job["ranking"]["by_score"]["logme"] == ["mobilenetv2_100@random"]
        finally:
            import redis

            redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    print(f"wheel built and installed in {installed:.0f} s; whole test {time.perf_counter() - began:.0f} s")
