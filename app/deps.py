"""FastAPI dependencies: settings, a database session, write authorisation."""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from app.db.session import session_scope
from app.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(settings: Settings = Depends(get_settings_dep)) -> Iterator[Session]:
    with session_scope(settings.database_url) as session:
        yield session


def key_allows_writes(settings: Settings, token: str) -> bool:
    """Whether ``token`` may write: any token when no keys are set, else one of the keys."""
    return not settings.api_keys or any(hmac.compare_digest(token, key) for key in settings.api_keys)


def require_writer(request: Request, settings: Settings = Depends(get_settings_dep)) -> None:
    """Writes need ``Authorization: Bearer KEY`` when ``ZOORANK_API_KEYS`` is set."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not key_allows_writes(settings, token):
        raise HTTPException(
            401,
            "send Authorization: Bearer <API key> to write",
            headers={"WWW-Authenticate": "Bearer"},
        )
