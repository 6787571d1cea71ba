"""FastAPI dependencies: settings, a database session, write authorisation."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from zoorank_app.db.session import session_scope
from zoorank_app.keys import KeyRing
from zoorank_app.settings import Settings

log = logging.getLogger(__name__)


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(settings: Settings = Depends(get_settings_dep)) -> Iterator[Session]:
    with session_scope(settings.database_url) as session:
        yield session


def caller_key(request: Request) -> str | None:
    """The name of the API key the request sent (found by :mod:`app.access`), or None."""
    name: str | None = getattr(request.state, "api_key", None)
    return name


def key_allows_writes(request: Request, token: str = "") -> bool:
    """Whether the request may write: always when no keys are configured, else when its
    ``Authorization`` header or ``token`` (a form's key field) holds a known key."""
    keys: KeyRing = request.app.state.keys
    return not keys.required or caller_key(request) is not None or keys.match(token) is not None


def require_writer(request: Request) -> None:
    """Writes need ``Authorization: Bearer KEY`` when API keys are configured."""
    if not key_allows_writes(request):
        client = request.client.host if request.client else "unknown"
        log.info("refused %s %s from %s: writes need an API key", request.method, request.url.path, client)
        raise HTTPException(
            401,
            "send Authorization: Bearer <API key> to write",
            headers={"WWW-Authenticate": "Bearer"},
        )
