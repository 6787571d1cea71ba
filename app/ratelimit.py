"""The rate limit's buckets: one per client (an API key's name, else an address), either in
this API process (:class:`RateLimiter`) or in Redis, shared by every API process that names the
same ``RATE_LIMIT_URL`` (:class:`SharedRateLimiter`). :func:`make_limiter` chooses from the
settings; :mod:`app.access` asks ``await limiter.take(client)`` per request."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from zoorank_app.settings import Settings

log = logging.getLogger(__name__)


class Limiter(Protocol):
    per_minute: int

    async def take(self, client: str) -> float:
        """Take a request from ``client``'s allowance: 0.0 when it may go on, else the seconds
        until it may."""
        ...


class RateLimiter:
    """A token bucket per client: ``per_minute`` tokens, refilled evenly (one every
    ``60 / per_minute`` s), a request takes one; a full bucket allows a burst of ``per_minute``.

    The buckets live in this API process: with several API processes (replicas behind a load
    balancer) each counts on its own, so a client spread over N of them may make up to N times
    the rate; :class:`SharedRateLimiter` keeps one bucket per client for all of them. An
    anonymous client is its socket's peer address: behind a reverse proxy, let
    uvicorn take it from ``X-Forwarded-For`` (``--forwarded-allow-ips`` naming the proxy), or
    every anonymous client shares the proxy's bucket. At most ``max_clients`` buckets are kept,
    the least recently seen dropped first (a dropped client starts again with a full bucket).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("a rate limit is a positive number of requests a minute")
        self.per_minute = per_minute
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0.0 when it had one, else the seconds until it has."""
        refill = self.per_minute / 60.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * refill)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / refill
            self._buckets[client] = (tokens - 1 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    async def take(self, client: str) -> float:
        return self.acquire(client)


# The same bucket as RateLimiter, kept as one number per client in Redis: the time at which the
# bucket will be full again ("theoretical arrival time" of the generic cell rate algorithm).
# A request is let through when, after adding its interval, that time is no more than a full
# bucket's worth of intervals ahead of now. Redis's own clock is used, so API hosts whose clocks
# differ still share one bucket; the key expires when the bucket is full again.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local full_at = tonumber(redis.call('GET', KEYS[1]) or now)
if full_at < now then full_at = now end
local after = full_at + interval
local wait = after - burst * interval - now
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(after), 'PX', math.ceil((after - now) * 1000) + 1000)
return '0'
"""


class SharedRateLimiter:
    """:class:`RateLimiter`'s bucket per client (``per_minute`` a minute, bursts of as many),
    held in Redis at ``url`` so that every API process naming the same URL counts together.

    While Redis cannot be reached the limit is not dropped: each process falls back to its own
    buckets (:class:`RateLimiter`), logs it, and tries Redis again ``retry_after`` seconds
    later; one slow Redis call waits at most ``timeout`` seconds."""

    def __init__(
        self,
        per_minute: int,
        url: str,
        *,
        prefix: str = "zoorank:rate:",
        timeout: float = 0.25,
        retry_after: float = 5.0,
    ) -> None:
        self.per_minute, self.url, self.prefix = per_minute, url, prefix
        self.timeout, self.retry_after = timeout, retry_after
        self.fallback = RateLimiter(per_minute)
        self._down_until = 0.0
        self._client: Any = None
        self._script: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> Any:
        # A redis.asyncio client belongs to the event loop that made it: one per loop.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            self._script = self._client.register_script(_TAKE)
            self._loop = loop
        return self._script

    async def take(self, client: str) -> float:
        if time.monotonic() < self._down_until:
            return self.fallback.acquire(client)
        try:
            interval = 60.0 / self.per_minute
            wait = await self._redis()(keys=[self.prefix + client], args=[interval, self.per_minute])
        except Exception as exc:  # unreachable, timed out, refused: limit here until it is back
            self._down_until = time.monotonic() + self.retry_after
            log.warning(
                "rate limit: Redis at RATE_LIMIT_URL unreachable (%s); counting in this process for %.0f s",
                type(exc).__name__,
                self.retry_after,
            )
            return self.fallback.acquire(client)
        return float(wait)


def make_limiter(settings: Settings) -> RateLimiter | SharedRateLimiter | None:
    """``RATE_LIMIT`` a minute per client (0: no limit), counted in ``RATE_LIMIT_URL``'s Redis
    when it is set, else in this process."""
    if not settings.rate_limit:
        return None
    if settings.rate_limit_url:
        return SharedRateLimiter(settings.rate_limit, settings.rate_limit_url)
    return RateLimiter(settings.rate_limit)
