"""Liveness, readiness (database + broker) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from zoorank_app.db.session import current_revision, get_engine
from zoorank_app.deps import get_settings_dep
from zoorank_app.schemas import Readiness
from zoorank_app.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database or the broker is not ready"}},
)
def readyz(request: Request, settings: Settings = Depends(get_settings_dep)) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = current_revision(settings.database_url)
        checks["database"] = "ok" if revision else "no schema (run: zoorank db upgrade)"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        request.app.state.ping_broker()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics", response_class=PlainTextResponse, responses={200: {"description": "Prometheus text format"}}
)
def metrics(request: Request, settings: Settings = Depends(get_settings_dep)) -> Response:
    """Prometheus text: HTTP traffic of every API process, and the work's state (jobs by status,
    task failures, seconds by model and score, queue depth, feature cache size) from the
    database, the broker and the cache folder."""
    from zoorank_app import metrics as gauges

    gauges.refresh(settings, request.app.state.queue_depth)
    return Response(gauges.exposition(), media_type=CONTENT_TYPE_LATEST)
