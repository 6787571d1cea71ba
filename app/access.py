"""Who may call the API, how often, with how much: one ASGI middleware in front of the routes
(API keys of :mod:`app.keys`, read protection, a rate limit, a request size limit) and CORS.

Every refusal is problem+json and happens before a route runs or a body is parsed. Writes are
checked by the routes themselves (:func:`app.deps.require_writer`), with the key found here.
"""

from __future__ import annotations

import base64
import logging
import math

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from zoorank_app.keys import KeyEntry, KeyRing
from zoorank_app.problems import problem
from zoorank_app.ratelimit import Limiter, make_limiter
from zoorank_app.settings import Settings

log = logging.getLogger(__name__)

# Open even when reads are protected: probes must reach them without a key, and they tell
# nothing about jobs, models or datasets. /metrics does (model and score names in its labels,
# jobs by status), so it needs a key like any read; Prometheus sends one with
# `authorization: {credentials_file: ...}` in its scrape config.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
STATIC_PREFIX = "/static/"  # the pages' scripts, styles and the docs' assets: code, no data
# Probes are never rate-limited: a 429 on /readyz would take a healthy API out of rotation.
UNLIMITED_PATHS = OPEN_PATHS
# These take archives, limited by MAX_UPLOAD_MB where the upload is read (app.archives); every
# other request body is limited here by MAX_REQUEST_KB.
UPLOAD_ROUTES = frozenset({("POST", "/v1/datasets"), ("POST", "/datasets")})


def presented_key(headers: Headers) -> str:
    """The key of ``Authorization: Bearer KEY``, or the password of ``Basic`` (how a browser
    sends a key to the HTML pages); "" when there is none."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return ""
    return ""


class AccessMiddleware:
    """Per request, in this order: find the caller's key (``request.state.api_key`` is its
    name, or None); the rate limit (per key, else per client address); read protection; the
    size limit of the body, counted as it arrives (Content-Length or not) and buffered, so a
    route only ever sees a body within the limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        limiter: Limiter | None,
        protect_reads: bool,
        max_request_bytes: int,
    ) -> None:
        self.app, self.keys, self.limiter = app, keys, limiter
        self.protect_reads, self.max_request_bytes = protect_reads, max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = Headers(scope=scope)
        entry: KeyEntry | None = self.keys.match(presented_key(headers)) if self.keys.required else None
        scope.setdefault("state", {})["api_key"] = entry.name if entry else None
        address = scope["client"][0] if scope.get("client") else "unknown"

        if self.limiter is not None and path not in UNLIMITED_PATHS and not path.startswith(STATIC_PREFIX):
            caller = f"key {entry.name}" if entry else f"address {address}"
            wait = await self.limiter.take(caller)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                log.info("rate limit: refused %s %s from %s", method, path, caller)
                response = problem(
                    429,
                    "Too many requests",
                    f"over {self.limiter.per_minute} requests a minute from this {caller.split()[0]} "
                    f"(ZOORANK_RATE_LIMIT); retry in {seconds} s",
                )
                response.headers["Retry-After"] = str(seconds)
                await response(scope, receive, send)
                return

        if (
            self.protect_reads
            and entry is None
            and path not in OPEN_PATHS
            and not path.startswith(STATIC_PREFIX)
        ):
            log.info("refused %s %s from %s: reads need an API key", method, path, address)
            api = path.startswith("/v1/")
            response = problem(
                401,
                "Unauthorized",
                "this server needs an API key to read: send Authorization: Bearer <API key>",
            )
            # Bearer for API clients; Basic makes a browser ask for the key (as the password).
            response.headers["WWW-Authenticate"] = (
                "Bearer" if api else 'Basic realm="zoorank", charset="UTF-8"'
            )
            await response(scope, receive, send)
            return

        if (method, path) not in UPLOAD_ROUTES:
            body = await self._read_body(headers, receive)
            if body is None:
                response = problem(
                    413,
                    "Payload too large",
                    f"the request body is over {self.max_request_bytes // 1024} KB "
                    "(ZOORANK_MAX_REQUEST_KB); datasets are uploaded to POST /v1/datasets",
                )
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_body(self, headers: Headers, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as it passes the limit (declared or counted)."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_request_bytes:
            return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away: the route sees that
            size += len(message.get("body", b""))
            if size > self.max_request_bytes:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


def install(api: FastAPI, settings: Settings) -> None:
    """Add the access middleware and, when ``CORS_ORIGINS`` is set, CORS for exactly those
    origins (outside it, so refusals carry the CORS headers a browser needs to read them)."""
    keys = KeyRing(settings.api_keys, settings.api_keys_file)
    limiter = make_limiter(settings)
    api.state.keys, api.state.rate_limiter = keys, limiter
    api.add_middleware(
        AccessMiddleware,
        keys=keys,
        limiter=limiter,
        protect_reads=settings.protect_reads,
        max_request_bytes=settings.max_request_kb * 1024,
    )
    if settings.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            # Keys travel in the Authorization header a script sets, never in cookies; without
            # credentials a browser's remembered Basic key is not sent to another origin.
            allow_credentials=False,
        )
