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
from zoorank_app.db.models import Base
from zoorank_app.db.session import alembic_config, current_revision, get_engine, upgrade

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
    code = f"from zoorank_app.db.session import upgrade; upgrade({url!r})"
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


@pytest.mark.slow
def test_the_migration_lock_waits_longer_than_a_statement_may(monkeypatch):
    """A process that starts while another migrates waits for the lock however long the other
    takes: the statement timeout that bounds every other statement does not cut it off."""
    import threading
    import time

    from zoorank_app.db import session as db_session

    from tests.service_harness import postgres_schema, reachable

    if not reachable(5432):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    monkeypatch.setattr(db_session, "STATEMENT_TIMEOUT_MS", 300)
    with postgres_schema() as url:
        holder = sa.create_engine(url, poolclass=sa.pool.NullPool)
        errors: list[BaseException] = []

        def migrate() -> None:
            try:
                upgrade(url)
            except BaseException as error:  # reported below
                errors.append(error)

        key = {"key": db_session._MIGRATION_LOCK}
        try:
            with holder.connect() as connection:  # another process migrating
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), key)
                waiting = threading.Thread(target=migrate)
                waiting.start()
                time.sleep(1.5)  # five statement timeouts
                assert waiting.is_alive() and not errors, errors
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), key)
                connection.commit()
            waiting.join(60)
        finally:
            holder.dispose()
        assert not errors, errors
        assert current_revision(url) == HEAD
