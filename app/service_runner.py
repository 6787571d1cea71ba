"""``zoorank serve`` (the API in one process, or in N processes sharing its socket), ``zoorank
run`` (API + one worker, foreground) and ``zoorank demo`` (the same, plus one ranking job
submitted over HTTP, printed, then a clean stop)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from fastapi import FastAPI
    from zoorank_app.settings import Settings


def _die_with_parent(sig: signal.Signals = signal.SIGQUIT) -> None:
    """In a child process: when its parent dies, however it dies, the kernel sends it ``sig``.

    The Celery worker of ``run``/``demo`` (set before exec) gets SIGQUIT, Celery's cold shutdown
    (its pool goes with it; tasks are acknowledged late, so a running one is re-queued). uvicorn
    re-raises the SIGTERM it caught after its own shutdown, which ends this process before any
    ``finally`` runs: without this, ``docker stop`` or systemd left the worker running,
    re-parented to PID 1."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def _start_worker(argv: list[str]) -> subprocess.Popen[bytes]:
    # Celery warns at length when run as root (as in containers and CI); the demo need not.
    quiet = "ignore:You're running the worker with superuser privileges"
    linux = sys.platform.startswith("linux")
    return subprocess.Popen(
        argv, env={**os.environ, "PYTHONWARNINGS": quiet}, preexec_fn=_die_with_parent if linux else None
    )


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # Celery: warm shutdown
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


API_PROCESS = "zoorank_app.service_runner:api_process"  # what uvicorn's worker processes call


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """The API on ``host:port``: in this process, or in ``workers`` processes that uvicorn
    supervises (restarting one that dies), with Prometheus's multiprocess mode under
    ``VAR_DIR/metrics/`` so that every process's ``/metrics`` sums them all."""
    import uvicorn
    from zoorank_app.main import create_app

    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", log_config=None)
        return
    from uvicorn.supervisors import Multiprocess
    from zoorank_app import metrics

    settings.ensure_dirs()
    if settings.auto_migrate:  # once here, not raced by the processes
        from zoorank_app.db.session import upgrade

        upgrade(settings.database_url)
    folders = settings.var_dir / "metrics"
    for folder in folders.glob("serve-*"):  # left by a server killed before it could remove it
        if not Path(f"/proc/{folder.name.removeprefix('serve-')}").exists():
            shutil.rmtree(folder, ignore_errors=True)
    folder = folders / f"serve-{os.getpid()}"
    metrics.start_multiprocess(folder)

    class Supervisor(Multiprocess):
        """uvicorn's supervisor, telling the metrics which process ended (a crash it restarted,
        SIGHUP's restart, SIGTTOU's one fewer)."""

        def keep_subprocess_alive(self) -> None:
            self._noting_ended(super().keep_subprocess_alive)

        def handle_signals(self) -> None:
            self._noting_ended(super().handle_signals)

        def _noting_ended(self, step: Callable[[], None]) -> None:
            before = {process.pid for process in self.processes}
            step()
            for pid in before - {process.pid for process in self.processes}:
                if pid is not None:
                    metrics.mark_process_dead(pid)

    config = uvicorn.Config(
        API_PROCESS, factory=True, host=host, port=port, workers=workers, log_level="info", log_config=None
    )
    try:
        Supervisor(config, sockets=[config.bind_socket()]).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def api_process() -> FastAPI:
    """One API process of ``serve --workers N`` (uvicorn calls it in each): settings from the
    environment, as the parent had them; ends with its parent, however the parent ends."""
    from zoorank_app.logs import configure
    from zoorank_app.main import create_app
    from zoorank_app.settings import get_settings

    if sys.platform.startswith("linux"):
        _die_with_parent(signal.SIGTERM)
    settings = get_settings()
    configure(settings.log_format)
    return create_app(settings)


def run_embedded(host: str, port: int, worker_argv: list[str]) -> None:
    import uvicorn
    from zoorank_app.main import create_app

    application = create_app()  # migrates first, so the worker finds the schema
    worker = _start_worker(worker_argv)
    try:
        uvicorn.run(application, host=host, port=port, log_level="info")
    finally:
        _stop(worker)


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (a bind succeeds)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def demo(
    *,
    port: int,
    samples_per_class: int,
    input_size: int,
    scores: list[str] | None,
    worker_argv: list[str],
    printer: Callable[..., None],
) -> int:
    import uvicorn
    from zoorank_app.main import create_app

    from zoorank.zoo.specs import default_models

    started = time.perf_counter()
    if not port_free("127.0.0.1", port):
        # another server there would take the demo's job and answer for it
        print(
            f"zoorank demo: port {port} on 127.0.0.1 is in use (another zoorank or another program);"
            " stop it or pass --port",
            file=sys.stderr,
        )
        return 2
    application = create_app()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    worker = _start_worker(worker_argv)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        models = default_models()
        print(f"zoorank demo: API on {base} and one Celery worker (SQLite + filesystem broker under ./var/)")
        print(
            f"ranking builtin:digits over the offline zoo ({len(models)} models: ImageNet weights and "
            f"random-init twins) with {samples_per_class} images per class at {input_size} px, "
            "sizes chosen to finish in a few minutes on a 2-core CPU"
        )
        body: dict[str, Any] = {
            "dataset": "builtin:digits",
            "models": models,
            "options": {"samples_per_class": samples_per_class, "input_size": input_size},
        }
        if scores:
            body["scores"] = scores
        response = httpx.post(f"{base}/v1/jobs", json=body, timeout=120)
        if response.status_code != 202:
            print(f"job refused: {response.status_code} {response.text}", file=sys.stderr)
            return 1
        job = response.json()
        print(f"POST /v1/jobs -> 202, job {job['id']}; polling GET /v1/jobs/{job['id']}")
        job = _poll(base, job["id"])
        values: dict[str, dict[str, float | None]] = {}
        for row in job["results"]:
            values.setdefault(row["model"], {})[row["score"]] = row["value"]
        failed = [p["model"] for p in job["progress"] if p["status"] != "succeeded"]
        if job["ranking"]:
            printer(job["ranking"], values, failed, title=f"job {job['id'][:8]}: {job['status']}")
        board = httpx.get(f"{base}/v1/leaderboard", params={"dataset": "builtin:digits"}).json()
        if board.get("data"):
            print(
                "GET /v1/leaderboard?dataset=builtin:digits (default ranking): "
                + ", ".join(row["model"] for row in board["data"][: len(models)])
            )
        print(
            f"job {job['status']} in {time.perf_counter() - started:.1f} s "
            f"(HTML page: {base}/jobs/{job['id']}, while a server runs)"
        )
        return 0 if job["status"] == "succeeded" else 1
    finally:
        _stop(worker)
        server.should_exit = True
        thread.join(timeout=10)


def _wait_ready(base: str, server: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not become ready within {timeout:.0f} s")


def _poll(base: str, job_id: str, timeout: float = 1800.0) -> dict[str, Any]:
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    bar = tqdm(unit="img", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        while time.monotonic() < deadline:
            job: dict[str, Any] = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
            bar.total = sum(p["images_total"] for p in job["progress"])
            bar.n = sum(p["images_done"] for p in job["progress"])
            running = [p["model"] for p in job["progress"] if p["status"] == "running"]
            bar.set_description(running[0] if running else job["status"])
            bar.refresh()
            if job["status"] in ("succeeded", "partial", "failed", "cancelled"):
                return job
            time.sleep(0.5)
    finally:
        bar.close()
    raise RuntimeError(f"job {job_id} did not finish within {timeout:.0f} s")
