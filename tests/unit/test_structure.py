"""The import graph (issue 15): the core imports no web, queue or database code; the API never
imports the workers; importing the workers builds nothing."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("zoorank", "app", "workers", "benchmarks")
SERVICE_LIBRARIES = {"fastapi", "starlette", "uvicorn", "celery", "kombu", "sqlalchemy", "alembic", "redis"}


def imported_packages(package: str) -> set[str]:
    """Top-level names imported anywhere in ``package`` (function bodies included)."""
    found: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def import_graph() -> dict[str, set[str]]:
    return {p: (imported_packages(p) & set(PACKAGES)) - {p} for p in PACKAGES}


def test_each_package_depends_only_on_those_below_it():
    graph = import_graph()
    assert graph["zoorank"] == set()
    assert graph["app"] == {"zoorank"}  # the service layer: settings, database, services, API
    assert graph["workers"] <= {"app", "zoorank"}
    assert graph["benchmarks"] <= {"zoorank", "app"}  # the service's load and fuzz studies use app
    assert not imported_packages("zoorank") & SERVICE_LIBRARIES


def test_the_whole_cli_and_pipeline_load_no_service_code_at_import():
    code = (
        "import sys, zoorank.cli, zoorank.rank, zoorank.validate; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & { {*SERVICE_LIBRARIES, *PACKAGES[1:]}!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_celery_app_is_built_on_first_use_not_at_import(tmp_path):
    var = tmp_path / "var"
    code = (
        "import workers.tasks, workers.celery_app as w, celery; "
        "assert w.worker_app.cache_info().currsize == 0; "
        "print(type(w.celery_app).__name__)"
    )
    env = {**os.environ, "ZOORANK_VAR_DIR": str(var)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Celery"  # built when asked for, as `celery -A` does
    assert (var / "broker").is_dir()


def test_importing_the_workers_alone_touches_nothing(tmp_path):
    var = tmp_path / "var"
    env = {**os.environ, "ZOORANK_VAR_DIR": str(var)}
    subprocess.run(
        [sys.executable, "-c", "import workers.tasks, workers.celery_app"], cwd=REPO, env=env, check=True
    )
    assert not var.exists()
