"""The service's commands stopped the way ``docker stop`` and systemd stop them (SIGTERM to the
main process): the whole process tree ends within a bounded time and nothing is left behind,
re-parented to PID 1. And ``zoorank serve --workers 2``: ``/metrics`` counts the requests of
both API processes, whichever answers."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service_harness import alive, descendants, free_port, reachable, zoorank_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STARTED = "Application startup complete."  # uvicorn logs it once per API process


def _wait_started(
    main, log: Path, port: int, api_processes: int, tree_size: int, timeout: float = 180
) -> None:
    """Until ``api_processes`` API processes have started and the main process has at least
    ``tree_size`` descendants."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and main.poll() is None:
        started = log.read_text(errors="replace").count(STARTED)
        if started >= api_processes and len(descendants(main.pid)) >= tree_size and reachable(port):
            return
        time.sleep(0.5)
    raise AssertionError(f"the service did not start: {log.read_text(errors='replace')[-3000:]}")


@pytest.mark.parametrize(
    ("args", "api_processes", "tree_size"),
    [
        (["run"], 1, 2),  # the API, and the Celery worker with its pool child
        (["serve"], 1, 0),
        (["serve", "--workers", "2"], 2, 2),  # two API processes (and multiprocessing's tracker)
    ],
    ids=["run", "serve", "serve-workers-2"],
)
def test_sigterm_to_the_main_process_stops_its_whole_tree(tmp_path: Path, args, api_processes, tree_size):
    port = free_port()
    with zoorank_service([*args, "--port", str(port)], tmp_path) as (main, log):
        _wait_started(main, log, port, api_processes, tree_size)
        time.sleep(2)  # let a worker finish starting
        _assert_tree_ends(main, signal.SIGTERM, tree_size, f"zoorank {' '.join(args)}")


def _assert_tree_ends(main, sig: signal.Signals, tree_size: int, what: str, timeout: float = 30) -> None:
    """``sig`` to the main process: it and every process below it end within ``timeout`` s."""
    tree = descendants(main.pid)
    assert len(tree) >= tree_size, tree
    main.send_signal(sig)
    main.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in tree):
        time.sleep(0.5)
    left = [p for p in tree if alive(p)]
    for pid in left:  # not to outlive the test: the main process is gone, its cleanup sees none
        os.kill(pid, signal.SIGKILL)
    assert not left, f"left running after {sig.name} to {what}: {left}"


def _sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics:\n{text[:2000]}"
    return float(found.group(1))


def test_metrics_of_two_api_processes_count_every_request(tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    healthz = 'zoorank_http_requests_total{method="GET",route="/healthz",status="200"}'
    with zoorank_service(["serve", "--port", str(port), "--workers", "2"], tmp_path) as (main, log):
        _wait_started(main, log, port, api_processes=2, tree_size=2)
        requests = 60
        # a connection each, 4 at a time: the kernel hands them to either process
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: httpx.get(f"{base}/healthz").status_code, range(requests)))
        assert statuses == [200] * requests
        for _ in range(6):  # whichever process answers counts both
            text = httpx.get(f"{base}/metrics").text
            assert _sample(text, healthz) == requests
            assert _sample(text, "zoorank_api_processes") == 2

        # One API process killed: uvicorn starts another; the dead one's counts stay, and it
        # no longer counts as a process.
        api = [p for p in descendants(main.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(api) == 2, api
        os.kill(api[0], signal.SIGKILL)
        _wait_started(main, log, port, api_processes=3, tree_size=2)
        for _ in range(6):
            text = httpx.get(f"{base}/metrics").text
            assert _sample(text, healthz) == requests
            assert _sample(text, "zoorank_api_processes") == 2

        # However the main process ends (here SIGKILL, no shutdown of its own), the API
        # processes end with it instead of serving on, re-parented to PID 1.
        _assert_tree_ends(main, signal.SIGKILL, 2, "zoorank serve --workers 2")
