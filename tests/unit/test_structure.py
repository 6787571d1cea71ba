"""The import graph (issue 15): the core imports no web, queue or database code; the API never
imports the workers; importing the workers builds nothing."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# import name -> folder: the folders keep the design's names, the import names are namespaced
FOLDERS = {
    "zoorank": "zoorank",
    "zoorank_app": "app",
    "zoorank_workers": "workers",
    "zoorank_bench": "benchmarks",
}
PACKAGES = tuple(FOLDERS)
SERVICE_LIBRARIES = {"fastapi", "starlette", "uvicorn", "celery", "kombu", "sqlalchemy", "alembic", "redis"}


def imported_packages(package: str) -> set[str]:
    """Top-level names imported anywhere in ``package`` (function bodies included)."""
    found: set[str] = set()
    for path in (REPO / FOLDERS[package]).rglob("*.py"):
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
    assert graph["zoorank_app"] == {"zoorank"}  # the service layer: settings, database, services, API
    assert graph["zoorank_workers"] <= {"zoorank_app", "zoorank"}
    assert graph["zoorank_bench"] <= {"zoorank", "zoorank_app"}  # the load and fuzz studies use the app
    assert not imported_packages("zoorank") & SERVICE_LIBRARIES
    # the folder names are not import names: a stale `from app import ...` works only from the
    # checkout's root, never in an installed wheel
    for package in PACKAGES:
        assert not imported_packages(package) & {"app", "workers", "benchmarks", "migrations"}, package


def test_the_wheel_lists_every_package_folder():
    """pyproject lists the packages by hand (the folders are mapped to other import names); a new
    sub-package left out of it would be missing from the wheel only."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            expected.add(".".join((name, *parts)))
    assert set(setuptools["packages"]) == expected
    assert not imported_packages("zoorank") & SERVICE_LIBRARIES


def test_the_whole_cli_and_pipeline_load_no_service_code_at_import():
    code = (
        "import sys, zoorank.cli, zoorank.rank, zoorank.groundtruth; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & { {*SERVICE_LIBRARIES, *PACKAGES[1:]}!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_celery_app_is_built_on_first_use_not_at_import(tmp_path):
    var = tmp_path / "var"
    code = (
        "import zoorank_workers.tasks, zoorank_workers.celery_app as w, celery; "
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
        [sys.executable, "-c", "import zoorank_workers.tasks, zoorank_workers.celery_app"],
        cwd=REPO,
        env=env,
        check=True,
    )
    assert not var.exists()


def test_each_cli_module_keeps_to_its_concern():
    """zoorank/cli/ (issue 24): the in-process commands never reach for the HTTP client, the server
    commands never run the pipeline, and the client and the printing do neither."""
    imports: dict[str, set[str]] = {}
    for path in (REPO / "zoorank" / "cli").glob("*.py"):
        names = imports.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)

    def uses(module: str, *prefixes: str) -> set[str]:
        return {n for n in imports[module] for p in prefixes if n == p or n.startswith(p + ".")}

    assert {"local", "catalogues", "remote", "client", "render", "options"} <= set(imports)
    http = ("httpx", "zoorank.cli.client", "zoorank.cli.remote")
    pipeline = (
        "zoorank.rank",
        "zoorank.groundtruth",
        "zoorank.explain",
        "zoorank.features",
        "zoorank.scores",
    )
    commands = ("zoorank.cli.local", "zoorank.cli.catalogues", "zoorank.cli.remote")
    assert not uses("local", *http) and not uses("catalogues", *http)
    assert not uses("remote", *pipeline, "zoorank.cli.local", "zoorank.cli.catalogues")
    assert not uses("client", *pipeline, *commands, "zoorank.cli.render")
    assert not uses("render", *pipeline, *http, *commands)
