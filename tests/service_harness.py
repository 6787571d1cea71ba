"""Helpers to run the real service in tests: settings in a temp folder, a real `celery worker`
process, and polling."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoorank_app.celery_client import QUEUES
from zoorank_app.cli import worker_argv
from zoorank_app.settings import Settings

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
        "ZOORANK_CACHE_MAX_MB": str(settings.cache_max_mb),
        "ZOORANK_DATA_ROOTS": ",".join(str(p) for p in settings.data_roots),
        "ZOORANK_DEVICE": "cpu",
        "ZOORANK_STALE_AFTER": str(settings.stale_after),
        "ZOORANK_TASK_SOFT_TIME_LIMIT": str(settings.task_soft_time_limit),
        "ZOORANK_LOG_FORMAT": settings.log_format,
    }


@contextmanager
def celery_worker(
    settings: Settings,
    *,
    log: Path,
    name: str | None = None,
    env: dict[str, str] | None = None,
    wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
    queues: Sequence[str] = QUEUES,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process (prefork pool, one child), stopped with a warm shutdown.

    ``env`` overrides the settings' variables (e.g. the addresses another host sees); ``wrap``
    changes the command line (e.g. to run it in a network namespace)."""
    env = {
        **os.environ,
        **settings_env(settings),
        "ZOORANK_OFFLINE": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **(env or {}),
    }
    # The command `zoorank worker` runs, at INFO (the tests read the log), with an own name.
    argv = [
        *worker_argv(1, queues),
        "--loglevel=INFO",
        "-n",
        f"{name or 'test'}-{os.getpid()}-{time.monotonic_ns()}@%h",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            wrap(argv), env=env, cwd=settings.var_dir, stdout=out, stderr=subprocess.STDOUT
        )
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


def wait_running(client: Any, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Until a model of the job has passed images through its network; returns the job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if any(p["images_done"] > 0 for p in job["progress"]):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never started: {job}")


def one_row_per_result(job: dict[str, Any]) -> None:
    """Every (model, score) of the job has exactly one stored result."""
    keys = [(r["model"], r["score"]) for r in job["results"]]
    assert len(keys) == len(set(keys)) == len(job["models"]) * len(job["scores"]), keys


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port`` (a service the tests need)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server(port: int, folder: Path, bind: tuple[str, ...] = ("127.0.0.1",)) -> subprocess.Popen[bytes]:
    """An own redis-server (the machine's shared one is never restarted by tests), keeping
    nothing on disk."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", *bind, "--save", "", "--appendonly", "no"]
        # Beyond loopback (the test hosts' links) Redis refuses clients without a password
        # unless told otherwise; these addresses exist only on this machine.
        + (["--protected-mode", "no"] if set(bind) - {"127.0.0.1"} else []),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not _listening(port, timeout=10):
        process.kill()
        raise AssertionError("redis-server did not start")
    return process


def _listening(port: int, *, timeout: float) -> bool:
    """Whether a server comes to accept on 127.0.0.1:``port`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reachable(port):
            return True
        time.sleep(0.1)
    return False


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's, without its su wrapper


def rabbitmq_server(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """An own RabbitMQ node on ``port`` (the machine's shared one is never restarted by tests),
    its data under ``folder``: started again with the same folder it finds its durable queues
    and persistent messages, as a restarted broker does. Stop it with :func:`kill_group`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enabled_plugins").write_text("[].\n")  # no management plugin: starts in seconds
    env = {
        **os.environ,
        "HOME": str(folder),  # its own Erlang cookie
        "RABBITMQ_NODENAME": f"zoorank{port}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(folder / "pid"),
    }
    return _server([str(RABBITMQ_SERVER)], port, folder, timeout=60, env=env)


def _server(
    argv: list[str], port: int, folder: Path, *, timeout: float, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start a server in a session of its own (:func:`kill_group` ends it with all it started),
    its output in ``folder/server.log``, and wait until it accepts on ``port``."""
    with (folder / "server.log").open("ab") as out:
        process = subprocess.Popen(
            argv, cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
    if not _listening(port, timeout=timeout):
        kill_group(process)
        raise AssertionError(
            f"{Path(argv[0]).name} did not start on port {port}: see {folder / 'server.log'}"
        )
    return process


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process started in its own session and everything it started (a crash)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# Debian's server binaries (the newest installed major version).
POSTGRES_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin"),
    key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    default=Path("/nonexistent"),
)


def postgres_cluster(folder: Path) -> Path:
    """A new, empty PostgreSQL cluster in ``folder`` (its own server, which a test may crash;
    the machine's shared one is never restarted by tests). PostgreSQL refuses to run as root:
    the cluster belongs to the ``postgres`` user, so this needs root."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    subprocess.run(
        [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
        user="postgres",
        group="postgres",
        extra_groups=[],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return data


def postgres_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    """Start the server of the cluster ``data`` on 127.0.0.1:``port``, in a session of its own:
    :func:`kill_group` then kills it and every backend at once, as a crash does (started again,
    it recovers from its write-ahead log). Its database is ``postgres``."""
    argv = [str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    return _server(argv, port, data.parent, timeout=30, user="postgres", group="postgres", extra_groups=[])


def postgres_url() -> str:
    return os.environ.get("ZOORANK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A database URL whose tables go to an own, fresh schema (dropped afterwards), so that
    parallel runs on the machine's PostgreSQL never collide."""
    import uuid

    import sqlalchemy as sa

    schema = f"t{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url())
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{postgres_url()}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def zip_archive(entries: dict[str, bytes]) -> bytes:
    """A zip archive in memory: member name -> bytes (uploads in tests)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def signal_whole_worker(pid: int, signum: int) -> None:
    """Send ``signum`` to the worker's parent and its pool children at once."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(p) for p in handle.read().split()]
    except OSError:
        children = []
    for process in [pid, *children]:
        os.kill(process, signum)


def kill_whole_worker(pid: int) -> None:
    """SIGKILL the worker's parent and its pool children at once, as a host crash would."""
    signal_whole_worker(pid, signal.SIGKILL)


def inline_client(settings: Settings, *, run_jobs: bool = True, run_units: bool = True) -> Any:
    """A TestClient of the API with inline workers: ``run_jobs`` runs a ranking's models (and a
    validation) inside the request (else jobs stay queued); ``run_units`` trains each
    confirmation unit inside the call that queues it (else the units stay queued, as with no
    worker listening)."""
    from fastapi.testclient import TestClient
    from zoorank_app import confirmations
    from zoorank_app.main import create_app
    from zoorank_app.services.runner import finalise_job, run_model
    from zoorank_app.services.validations import run_validation

    def dispatch(job_id: str, models: list[str]) -> list[str]:
        if run_jobs:
            for model in models:
                run_model(settings, job_id, model)
            finalise_job(settings, job_id)
        return []

    def send(confirmation_id: str, model: str, rung: int) -> None:
        if run_units:
            confirmations.run_unit(settings, confirmation_id, model, rung, send)

    def validate(job_id: str) -> list[str]:
        if run_jobs:
            run_validation(settings, job_id)
        return []

    return TestClient(
        create_app(
            settings,
            dispatch=dispatch,
            revoke=lambda ids: None,
            send_confirm=send,
            dispatch_validation=validate,
        )
    )


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (children, theirs, ...), read from /proc."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                children = [int(p) for p in handle.read().split()]
        except OSError:
            continue
        out |= set(children)
        todo += children
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def zoorank_service(args: Sequence[str], folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``zoorank ARGS`` (``serve``, ``run``) as its own process on the embedded defaults under
    ``folder`` (SQLite, filesystem broker), its output in the log file yielded with it; it and
    everything it started are killed on the way out."""
    env = {
        **os.environ,
        "ZOORANK_VAR_DIR": str(folder / "var"),
        "ZOORANK_OFFLINE": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    for name in (
        "ZOORANK_DATABASE_URL",
        "ZOORANK_BROKER_URL",
        "ZOORANK_RESULT_BACKEND",
        "PROMETHEUS_MULTIPROC_DIR",
    ):
        env.pop(name, None)
    log = folder / "service.log"
    with log.open("wb") as out:
        main = subprocess.Popen(
            [sys.executable, "-m", "zoorank.cli", *args],
            env=env,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield main, log
    finally:
        for pid in [main.pid, *descendants(main.pid)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        main.wait()
