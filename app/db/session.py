"""Engines and sessions per database URL, and the schema upgrade (Alembic, never create_all)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import zoorank_migrations
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# The migrations ship as the package zoorank_migrations (the folder migrations/ in a checkout), so
# an installed wheel can upgrade its database as a source checkout can.
MIGRATIONS = Path(zoorank_migrations.__file__).resolve().parent
# What an unreachable or restarting database raises: the API answers 503, a worker retries its
# task, and best-effort writes (progress, heartbeats) are skipped until it is back.
DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError)
POOL_SIZE = 20
POOL_OVERFLOW = 20
# A database host cut off by the network (packets dropped, nothing refused) must turn into an
# error, not a wait: a new connection gives up after CONNECT_TIMEOUT s, and an open one whose
# sent bytes go unacknowledged for TCP_USER_TIMEOUT ms is closed by the kernel (a pool's
# pre-ping on it would otherwise wait for TCP's own give-up, about 15 minutes). Keepalives
# find idle pooled connections whose peer is gone. The API then answers 503 within about 10 s
# (tests/integration/test_database_partition.py), and workers retry their writes.
CONNECT_TIMEOUT = 5
TCP_USER_TIMEOUT = 5000
POSTGRES_TIMEOUTS = {
    "connect_timeout": CONNECT_TIMEOUT,
    "tcp_user_timeout": TCP_USER_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
# A statement that waits on the server (for a lock held by a migration or a stuck transaction,
# or on an overloaded database) is cancelled by PostgreSQL after STATEMENT_TIMEOUT_MS: the API
# answers 503 and a worker retries its write, instead of both waiting as long as the holder.
# Every statement here takes milliseconds; only the migration lock may wait longer (it lifts the
# timeout in its own transaction).
STATEMENT_TIMEOUT_MS = 15_000


@cache
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # API and worker write concurrently
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # Connections kept open per process. SQLAlchemy's default (5, and 10 more opened and closed
    # per use) made a loaded API open a connection for one request in five (benchmarks/load.py:
    # 1100 connections opened for 5500 requests, 120 with these numbers). An API process runs
    # at most 40 requests at once (the thread pool), a worker process one or two sessions.
    postgres = url.startswith("postgresql")
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        connect_args=POSTGRES_TIMEOUTS if postgres else {},
    )
    if postgres:

        @event.listens_for(engine, "connect")
        def _statement_timeout(dbapi_connection: Any, _record: Any) -> None:
            # A connect argument would replace the URL's own `options` (a search_path, say).
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
            cursor.close()
            dbapi_connection.commit()  # a SET inside a transaction rolled back would not last

    return engine


@cache
def _sessionmaker(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Any fixed 64-bit number: the PostgreSQL advisory lock that serialises schema upgrades.
_MIGRATION_LOCK = 0x7A6F6F72616E6B  # "zoorank"


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision``, one process at a time: an API and its
    workers starting together on an empty database do not race (the first migrates, the others
    wait and then find the schema at head)."""
    from alembic import command

    with _migration_lock(url):
        command.upgrade(alembic_config(url), revision)


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    if url.startswith("sqlite"):
        import fcntl

        path = url.split("///", 1)[-1]
        if not path or path == ":memory:":
            yield
            return
        lock = Path(f"{path}.migrate-lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    from sqlalchemy import text

    with get_engine(url).connect() as connection:
        # Another process's migration may take longer than a statement may (this transaction only).
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
            connection.commit()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
