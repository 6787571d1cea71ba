"""The database cut off by the network, as a partition does it: packets dropped, nothing
refused (iptables DROP on the port the service reaches PostgreSQL through); a statement held
up by a lock; the server crashed and restarted. The API answers 503 problem+json within a
bound, never hangs, and recovers by itself once the database is back; workers retry."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from zoorank_app.db import session as db_session
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests.netns import Forwarder
from tests.service_harness import (
    LONG_JOB,
    POSTGRES_BIN,
    celery_worker,
    free_port,
    kill_group,
    one_row_per_result,
    postgres_cluster,
    postgres_schema,
    postgres_server,
    reachable,
    wait_for_job,
    wait_running,
)

pytestmark = pytest.mark.integration

BOUND = 30.0  # seconds an answer may take while the database is cut off (about 10 expected)


def _iptables_usable() -> bool:
    if shutil.which("iptables") is None:
        return False
    return subprocess.run(["iptables", "-L", "INPUT", "-n"], capture_output=True).returncode == 0


@contextmanager
def partitioned(port: int) -> Iterator[None]:
    """Drop every packet to and from ``port`` on this machine until the block ends."""
    rules = [
        ["-p", "tcp", "--dport", str(port), "-j", "DROP"],
        ["-p", "tcp", "--sport", str(port), "-j", "DROP"],
    ]
    for rule in rules:
        subprocess.run(["iptables", "-I", "INPUT", *rule], check=True)
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", "INPUT", *rule], check=False)


def _within(call: Callable[[], Any], limit: float) -> tuple[Any, float]:
    """``call()``'s result and its seconds; fails the test (not hangs it) past ``limit``."""
    result: list[Any] = []
    began = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(limit)
    assert result, f"no answer within {limit:.0f} s: the request hangs while the database is cut off"
    return result[0], time.monotonic() - began


@pytest.fixture
def cut_off_database(tmp_path):
    if not _iptables_usable():
        pytest.skip("iptables is not usable here (needs root and the iptables package)")
    port = free_port()
    forwarder = Forwarder("127.0.0.1", port, "127.0.0.1", 5432)
    try:
        with postgres_schema() as url:
            yield url.replace("127.0.0.1:5432", f"127.0.0.1:{port}"), port
    finally:
        forwarder.close()


def test_database_cut_off_answers_503_within_a_bound_and_recovers(cut_off_database, tmp_path):
    url, port = cut_off_database
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], database_url=url)
    client = TestClient(create_app(settings))  # migrates through the forwarder
    assert client.get("/v1/jobs").status_code == 200  # a pooled connection now exists
    with partitioned(port):
        for path in ("/v1/jobs", "/v1/jobs/abc", "/readyz"):
            answer, seconds = _within(lambda path=path: client.get(path), BOUND)
            assert answer.status_code == 503, (path, answer.text)
            assert seconds < BOUND
            if path != "/readyz":
                assert answer.headers["content-type"] == "application/problem+json"
                assert int(answer.headers["retry-after"]) > 0
            else:
                assert answer.json()["checks"]["database"].startswith("error")
    deadline = time.monotonic() + BOUND
    while True:  # recovers by itself: no restart, no operator
        answer, _ = _within(lambda: client.get("/v1/jobs"), BOUND)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert client.get("/readyz").status_code == 200


def test_a_worker_cut_off_from_the_database_mid_model_retries_and_the_job_completes(
    cut_off_database, tmp_path
):
    import uuid

    import redis

    url, port = cut_off_database
    direct = url.replace(f"127.0.0.1:{port}", "127.0.0.1:5432")  # the API is not cut off
    redis_db = 1 + uuid.uuid4().int % 14
    api_settings = Settings(
        var_dir=tmp_path / "var",
        data_roots=[tmp_path / "data"],
        database_url=direct,
        broker_url=f"redis://127.0.0.1:6379/{redis_db}",
    )
    worker_settings = Settings(**{**api_settings.model_dump(), "database_url": url})
    client = TestClient(create_app(api_settings))
    log = tmp_path / "worker.log"
    try:
        with celery_worker(worker_settings, log=log):
            job_id = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
            wait_running(client, job_id)
            with partitioned(port):
                time.sleep(12)
            job = wait_for_job(client, job_id, timeout=300)
    finally:
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
    text = log.read_text()
    assert job["status"] == "succeeded", (job, text[-3000:])
    one_row_per_result(job)
    # the fault reached the worker: its writes failed and were retried, not lost
    assert "database unreachable" in text or "heartbeat of" in text, text[-3000:]


def test_a_statement_held_up_by_a_lock_answers_503_within_the_statement_timeout(tmp_path, monkeypatch):
    """The database answers but holds a statement (a table locked by a migration or a stuck
    transaction): PostgreSQL cancels it after the statement timeout, the API answers 503 instead
    of waiting as long as the holder, and answers again once the lock is gone."""
    if not reachable(5432):
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    monkeypatch.setattr(db_session, "STATEMENT_TIMEOUT_MS", 1500)  # read at each new connection
    with postgres_schema() as url:
        settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], database_url=url)
        client = TestClient(create_app(settings))
        assert client.get("/v1/jobs").status_code == 200
        holder = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with holder.connect() as connection:
                connection.execute(sa.text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
                answer, seconds = _within(lambda: client.get("/v1/jobs"), BOUND)
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                assert "did not answer in time" in answer.json()["detail"]
                assert 1.4 < seconds < 10, seconds
                connection.rollback()  # the lock is released
            assert client.get("/v1/jobs").status_code == 200
        finally:
            holder.dispose()


def test_postgresql_crashed_and_restarted_mid_job_the_job_completes(tmp_path):
    """The database server killed -9 with every backend (a crash) while a model runs, started
    again 5 s later (it recovers from its log): meanwhile the API answers 503 at once, the
    worker's writes wait and retry; afterwards the API answers again and the job completes with
    one row per result, without a restart of either."""
    if not (POSTGRES_BIN / "postgres").exists() or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL's server binaries and root (the cluster runs as user postgres)")
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="zoorank-pg-"))  # pytest's tmp_path is private to root
    data = postgres_cluster(folder)
    server = postgres_server(data, port)
    try:
        settings = Settings(
            var_dir=tmp_path / "var",
            data_roots=[tmp_path / "data"],
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
        )
        client = TestClient(create_app(settings))
        log = tmp_path / "worker.log"
        with celery_worker(settings, log=log):
            job_id = client.post("/v1/jobs", json=LONG_JOB).json()["id"]
            wait_running(client, job_id)
            kill_group(server)
            answer, seconds = _within(lambda: client.get(f"/v1/jobs/{job_id}"), BOUND)
            assert answer.status_code == 503 and seconds < 10, (answer.text, seconds)
            assert answer.headers["content-type"] == "application/problem+json"
            time.sleep(5)
            server = postgres_server(data, port)
            job = wait_for_job(client, job_id, timeout=300)
        assert client.get("/readyz").status_code == 200
    finally:
        kill_group(server)
        shutil.rmtree(folder, ignore_errors=True)
    text = log.read_text()
    assert job["status"] == "succeeded", (job, text[-3000:])
    one_row_per_result(job)
    assert "database unreachable" in text or "heartbeat of" in text, text[-3000:]  # it felt the crash
