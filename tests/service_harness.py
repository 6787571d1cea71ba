"""Helpers to run the real service in tests: settings in a temp folder, a real `celery worker`
process, and polling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.settings import Settings

REPO = Path(__file__).resolve().parents[1]

# One model over every digit at 128 px: a pass long enough (tens of seconds) that a fault test
# can kill or cancel it in the middle.
LONG_JOB: dict[str, Any] = {
    "dataset": "builtin:digits",
    "models": ["tf_efficientnet_lite2@random"],
    "scores": ["logme"],
    "options": {"samples_per_class": 0, "input_size": 128, "tap_images_per_class": 2},
}


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "ZOORANK_VAR_DIR": str(settings.var_dir),
        "ZOORANK_DATABASE_URL": settings.database_url,
        "ZOORANK_BROKER_URL": settings.broker_url,
        "ZOORANK_RESULT_BACKEND": settings.result_backend,
        "ZOORANK_CACHE_DIR": str(settings.cache_dir),
        "ZOORANK_DATA_ROOTS": ",".join(str(p) for p in settings.data_roots),
        "ZOORANK_DEVICE": "cpu",
        "ZOORANK_STALE_AFTER": str(settings.stale_after),
        "ZOORANK_TASK_SOFT_TIME_LIMIT": str(settings.task_soft_time_limit),
        "ZOORANK_LOG_FORMAT": settings.log_format,
    }


@contextmanager
def celery_worker(settings: Settings, *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process (prefork pool, one child), stopped with a warm shutdown."""
    env = {
        **os.environ,
        **settings_env(settings),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app:celery_app",
        "worker",
        "--loglevel=INFO",
        "--concurrency=1",
        "-Q",
        "zoorank",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=settings.var_dir, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_for_job(
    client: Any, job_id: str, *, timeout: float = 300.0, until: tuple[str, ...] = ()
) -> dict[str, Any]:
    terminal = until or ("succeeded", "partial", "failed", "cancelled")
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in terminal:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout} s: {job.get('progress')}")


@contextmanager
def serve_in_thread(application: Any) -> Iterator[str]:
    """``application`` served by uvicorn on a free 127.0.0.1 port in a thread; yields its base
    URL and stops the server afterwards."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    if not server.started:  # a test must fail here, not pass against nothing
        server.should_exit = True
        raise RuntimeError(f"the test server did not start on port {port}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
