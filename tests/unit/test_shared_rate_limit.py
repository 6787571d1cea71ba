"""One rate limit for every API process: the buckets in Redis (``RATE_LIMIT_URL``), against the
in-process token bucket's known behaviour (a burst of N, then one request every 60/N s)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid

import pytest
from pydantic import ValidationError
from zoorank_app.ratelimit import RateLimiter, SharedRateLimiter, make_limiter
from zoorank_app.settings import Settings

from tests.unit.test_api import _queued


def _redis_running() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url():
    if not _redis_running():
        pytest.skip("Redis (127.0.0.1:6379) is not running; start it as the README says")
    import redis

    db = 1 + uuid.uuid4().int % 14
    yield f"redis://127.0.0.1:6379/{db}"
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    if keys := client.keys("zoorank:rate:*"):
        client.delete(*keys)


def _takes(limiters, client: str, n: int) -> list[float]:
    async def go() -> list[float]:
        return [await limiters[i % len(limiters)].take(client) for i in range(n)]

    return asyncio.run(go())


def test_processes_sharing_redis_count_together_as_one_bucket(redis_url):
    prefix = f"zoorank:rate:{uuid.uuid4().hex}:"
    api_1, api_2 = (SharedRateLimiter(6, redis_url, prefix=prefix) for _ in range(2))
    waits = _takes([api_1, api_2], "key alice", 7)  # alternately to two API processes
    assert waits[:6] == [0.0] * 6  # the burst: 6 of a 6-a-minute limit, wherever they land
    assert waits[6] == pytest.approx(10.0, abs=0.5)  # then one every 60/6 s
    assert _takes([api_2], "key bob", 1) == [0.0]  # another client: its own bucket
    # The same requests to one process with its own bucket give the same answers.
    local = RateLimiter(6)
    assert [local.acquire("key alice") for _ in range(7)][:6] == [0.0] * 6


def test_the_shared_bucket_refills_one_request_per_interval(redis_url):
    prefix = f"zoorank:rate:{uuid.uuid4().hex}:"
    limiter = SharedRateLimiter(60, redis_url, prefix=prefix)  # one a second, bursts of 60
    waits = _takes([limiter], "address 192.0.2.1", 61)
    assert waits[:60] == [0.0] * 60 and 0.5 < waits[60] <= 1.0
    time.sleep(waits[60] + 0.05)
    assert _takes([limiter], "address 192.0.2.1", 2) == [0.0, pytest.approx(1.0, abs=0.2)]


def test_two_api_processes_with_one_rate_limit_url_answer_429_together(redis_url, tmp_path):
    def api(url: str):
        settings = Settings(
            var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], rate_limit=3, rate_limit_url=url
        )
        return _queued(settings)

    # Every test client is the address "testclient": clear its bucket from an earlier run.
    import redis

    redis.Redis.from_url(redis_url).delete("zoorank:rate:address testclient")
    first, second = api(redis_url), api(redis_url)
    statuses = [client.get("/v1/jobs").status_code for client in (first, second, first)]
    assert statuses == [200, 200, 200]
    refused = second.get("/v1/jobs")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "20"  # 60 / 3 s

    alone_1, alone_2 = api(""), api("")  # no URL: each process counts on its own
    assert [c.get("/v1/jobs").status_code for c in (alone_1, alone_2) * 3] == [200] * 6
    assert alone_1.get("/v1/jobs").status_code == 429


def test_an_unreachable_redis_falls_back_to_a_limit_in_each_process(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limiter = SharedRateLimiter(2, f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger="zoorank_app.ratelimit"):
        waits = _takes([limiter], "key alice", 3)
    assert waits[:2] == [0.0, 0.0] and waits[2] == pytest.approx(30.0, abs=0.5)
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1  # once, not per request


def test_rate_limit_url_must_be_redis_and_is_not_echoed():
    assert make_limiter(Settings(rate_limit=0, rate_limit_url="redis://h:6379/0")) is None
    assert isinstance(make_limiter(Settings(rate_limit=5)), RateLimiter)
    assert isinstance(make_limiter(Settings(rate_limit=5, rate_limit_url="redis://h/0")), SharedRateLimiter)
    with pytest.raises(ValidationError, match="not a Redis URL") as refused:
        Settings(rate_limit_url="https://user:s3cret@example.org/")
    assert "s3cret" not in str(refused.value)
