"""The FastAPI application: ``create_app(settings)``; ``app`` for ``uvicorn zoorank_app.main:app``."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from zoorank_app import access, docs, metrics, pages, problems
from zoorank_app.routes import catalogue, compare, health, jobs, validations
from zoorank_app.services.jobs import Dispatch
from zoorank_app.settings import Settings, get_settings

log = logging.getLogger(__name__)


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Leave what is loaded at start-up out of the garbage collector's full passes, once per
    process.

    The API process holds about 360,000 objects once the app, torch and timm are imported, and
    they live as long as the process. A full collection walks all of them, about 0.17 s on a
    2-core machine, and every request in flight waits for it: that was the slowest 1 % of job
    polls under load. Frozen (``gc.freeze``), they are skipped, and a full pass walks only
    what requests made since. Done once: a process that builds several apps (the tests) would
    otherwise freeze, and so never collect, the cycles each app leaves behind."""
    global _heap_frozen
    if not _heap_frozen:
        gc.collect()
        gc.freeze()
        _heap_frozen = True


def create_app(
    settings: Settings | None = None,
    *,
    dispatch: Dispatch | None = None,
    revoke: Callable[[list[str]], None] | None = None,
    dispatch_validation: Callable[[str], list[str]] | None = None,
    send_confirm: Callable[[str, str, int], None] | None = None,
) -> FastAPI:
    """Build the API. ``dispatch``/``revoke`` default to the Celery ones (by task name)."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    if settings.auto_migrate:
        from zoorank_app.db.session import upgrade

        upgrade(settings.database_url)
    from zoorank_app.dispatch import CeleryDispatcher

    dispatcher = CeleryDispatcher(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = None
        if settings.sweep_interval > 0:
            from zoorank_app import sweeper

            stop = sweeper.start(
                settings,
                dispatcher.send_model,
                dispatcher.queue_depth,
                send_confirm=send_confirm or dispatcher.send_confirm_unit,
                contents=dispatcher.contents,
            )
        freeze_startup_heap()
        metrics.watch_gc()
        metrics.API_PROCESSES.set(1)
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
    api.state.send_confirm = send_confirm or dispatcher.send_confirm_unit
    api.state.ping_broker = dispatcher.ping_broker
    api.state.queue_depth = dispatcher.queue_depth
    problems.install(api)
    docs.install(api)
    api.mount("/static/app", StaticFiles(directory=Path(__file__).parent / "static"), name="app-static")
    api.include_router(health.router)
    api.include_router(jobs.router)
    api.include_router(validations.router)
    api.include_router(catalogue.router)
    api.include_router(compare.router)
    api.include_router(pages.router)

    access.install(api, settings)
    api.add_middleware(metrics.RequestMetrics)  # added last, so outermost: refusals are counted too
    return api


def __getattr__(name: str) -> FastAPI:
    # `uvicorn zoorank_app.main:app` builds the app on first access, not at import: this is
    # that process's entry point, where its network policy is set (create_app changes no
    # environment; it passes `settings.offline` where a request needs it).
    if name == "app":
        settings = get_settings()
        settings.apply_network_policy()
        return create_app(settings)
    raise AttributeError(name)
