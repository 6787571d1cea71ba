"""The load benchmark runs the service from the commit it names (``--commit``) and says how many
API processes served each run."""

from __future__ import annotations

import os
import subprocess
import sys

from zoorank_bench import load


def test_an_exported_commit_imports_its_own_service_code(tmp_path):
    source, short = load.export("HEAD", tmp_path / "source")
    assert short
    names = ", ".join(load.PACKAGE_DIRS)
    found = subprocess.run(
        [sys.executable, "-c", f"import {names}; print('\\n'.join(m.__file__ for m in ({names},)))"],
        env={**os.environ, "PYTHONPATH": str(source)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # not the working tree's (the editable install's) packages
    assert len(found) == len(load.PACKAGE_DIRS) and all(f.startswith(str(source)) for f in found), found


def test_the_runs_table_names_the_api_processes():
    run = {
        "label": "two",
        "commit": "abc1234",
        "api_processes": 2,
        "poll_interval_s": 0.25,
        "requests_per_second": 150.0,
        "submit": {"p50_ms": 50.0, "p99_ms": 300.0},
        "poll": {"p50_ms": 20.0, "p99_ms": 150.0},
        "errors": {},
        "database": {"lost": 0, "duplicated": 0},
        "cpu_seconds_during_load": {"api (zoorank serve)": 30.0},
        "database_connections_opened_during_load": 20,
        "load_average_before": [1.0, 1.0, 1.0],
        "command": "python -m benchmarks.load --api-workers 2",
    }
    earlier = {key: value for key, value in run.items() if key != "api_processes"}  # runs before the option
    header, _, two, one = load.table([run, earlier]).splitlines()[:4]
    assert "| API processes |" in header
    assert two.startswith("| two | abc1234 | 2 | 0.25 s |") and one.startswith(
        "| two | abc1234 | 1 | 0.25 s |"
    )
