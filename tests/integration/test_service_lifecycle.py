"""``zoorank run`` stopped the way ``docker stop`` and systemd stop it (SIGTERM to the main
process): the whole process tree ends within a bounded time and no worker is left behind,
re-parented to PID 1."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.service_harness import REPO, free_port, reachable

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> set[int]:
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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_to_zoorank_run_stops_the_worker_too(tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "ZOORANK_VAR_DIR": str(tmp_path / "var"),
        "ZOORANK_OFFLINE": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("ZOORANK_DATABASE_URL", None)
    env.pop("ZOORANK_BROKER_URL", None)
    main = subprocess.Popen(
        [sys.executable, "-m", "zoorank.cli", "run", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        tree: set[int] = set()
        # the API answers, and the worker runs with its pool child (worker + pool: 2 processes)
        while time.monotonic() < deadline and not (
            reachable(port) and len(tree := _descendants(main.pid)) >= 2
        ):
            time.sleep(0.5)
        assert reachable(port) and len(tree) >= 2, tree
        time.sleep(2)  # let the worker finish starting
        tree = _descendants(main.pid)
        main.send_signal(signal.SIGTERM)
        main.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.5)
        left = [p for p in tree if _alive(p)]
        assert not left, f"left running after SIGTERM to zoorank run: {left}"
    finally:
        for pid in [main.pid, *_descendants(main.pid)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
