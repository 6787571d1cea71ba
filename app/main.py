"""The FastAPI application: ``create_app(settings)``; ``app`` for ``uvicorn app.main:app``."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from app import access, docs, metrics, pages, problems
from app.routes import catalogue, health, jobs, validations
from app.services import Dispatch
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    dispatch: Dispatch | None = None,
    revoke: Callable[[list[str]], None] | None = None,
    dispatch_validation: Callable[[str], list[str]] | None = None,
) -> FastAPI:
    """Build the API. ``dispatch``/``revoke`` default to the Celery ones (by task name)."""
    settings = settings or get_settings()
    settings.apply_network_policy()  # registering a timm-hub model loads it in this process
    settings.ensure_dirs()
    if settings.auto_migrate:
        from app.db.session import upgrade

        upgrade(settings.database_url)
    from app.dispatch import CeleryDispatcher

    dispatcher = CeleryDispatcher(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = None
        if settings.sweep_interval > 0:
            from app import sweeper

            stop = sweeper.start(settings, dispatcher.send_model, dispatcher.queue_depth)
        yield
        if stop is not None:
            stop.set()

    api = FastAPI(
        lifespan=lifespan,
        docs_url=None,  # app.docs serves both pages from local assets
        redoc_url=None,
        title="zoorank",
        version="0.1.0",
        description="Which pretrained model should you fine-tune? Transferability ranking of a model zoo.",
        # `/v1/jobs/%2F` must be a 404, not a redirect to the job list
        redirect_slashes=False,
        # what app.access may answer on any route: a key required, a body too large, too many requests
        responses=problems.problem_responses(401, 413, 429),
    )
    api.state.settings = settings
    api.state.dispatch = dispatch or dispatcher.dispatch
    api.state.revoke = revoke or dispatcher.revoke
    api.state.dispatch_validation = dispatch_validation or dispatcher.dispatch_validation
    api.state.ping_broker = dispatcher.ping_broker
    api.state.queue_depth = dispatcher.queue_depth
    problems.install(api)
    docs.install(api)
    api.mount("/static/app", StaticFiles(directory=Path(__file__).parent / "static"), name="app-static")
    api.include_router(health.router)
    api.include_router(jobs.router)
    api.include_router(validations.router)
    api.include_router(catalogue.router)
    api.include_router(pages.router)

    access.install(api, settings)  # inside _measure, so its refusals are counted too

    @api.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        metrics.LATENCY.labels(request.method, path).observe(time.perf_counter() - start)
        return response

    return api


def __getattr__(name: str) -> FastAPI:
    # `uvicorn app.main:app` builds the app on first access, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
