"""The Alembic migrations build exactly the schema of the SQLAlchemy models."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db.models import Base
from app.db.session import alembic_config, current_revision, get_engine, upgrade

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_upgrade_matches_models(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    upgrade(url)
    assert current_revision(url) is not None
    with get_engine(url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    upgrade(url)  # idempotent


def _concurrent_upgrades(url: str, processes: int = 4) -> list[subprocess.CompletedProcess[str]]:
    code = f"from app.db.session import upgrade; upgrade({url!r})"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    return [subprocess.CompletedProcess(r.args, r.wait(), *r.communicate()) for r in runs]


@pytest.mark.slow
def test_processes_starting_together_migrate_once_without_racing(tmp_path):
    """An API and workers starting at once on an empty database: every process succeeds."""
    urls = [f"sqlite:///{tmp_path}/race.db"]
    schema = f"m{uuid.uuid4().hex[:12]}"
    admin = None
    try:
        admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
        with admin.begin() as connection:
            connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
        urls.append(f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")
    except sa.exc.OperationalError:
        admin = None  # no PostgreSQL here: SQLite only
    try:
        for url in urls:
            runs = _concurrent_upgrades(url)
            assert all(run.returncode == 0 for run in runs), [run.stderr[-800:] for run in runs]
            assert current_revision(url) == HEAD
    finally:
        if admin is not None:
            with admin.begin() as connection:
                connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
