"""RFC 9457 problem details: the one helper every HTTP error goes through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from zoorank_app.db.session import DATABASE_DOWN

from zoorank.errors import ConflictError, InvalidInputError, TooLargeError, UnknownNameError

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


# Answers under these paths are for programs; everything else is a page a person reads.
API_PATHS = ("/v1/", "/metrics", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/static/")


def _wants_page(request: Request | None) -> bool:
    return (
        request is not None
        and not request.url.path.startswith(API_PATHS)
        and "text/html" in request.headers.get("accept", "")
    )


def answer(request: Request | None, status: int, title: str, detail: str, **extra: Any) -> Response:
    """The problem as ``application/problem+json``, or as an HTML page with a way back when a
    browser asked for a page."""
    if not _wants_page(request):
        return problem(status, title, detail, **extra)
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    return templates.TemplateResponse(
        request,  # type: ignore[arg-type]
        "error.html",
        {"status": status, "title": title, "detail": detail, "field": extra.get("field")},
        status_code=status,
    )


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def _located(error: Any) -> dict[str, Any]:
    """A validation error as ``{field, message}``; a body that is not JSON at all is the
    body's fault, at a character offset (which FastAPI puts where a field name goes)."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        at = loc[1] if len(loc) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", error.get("msg"))
        return {"field": "body", "message": f"not valid JSON at character {at}: {reason}"}
    return {"field": ".".join(str(p) for p in loc if p != "body"), "message": error.get("msg")}


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return answer(request, exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(UnknownNameError)
    async def _unknown(request: Request, exc: UnknownNameError) -> Response:
        return answer(request, 422, "Unknown name", str(exc), field=exc.field)

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> Response:
        return answer(request, 409, "Conflict", str(exc), field=exc.field)

    @app.exception_handler(TooLargeError)
    async def _too_large(request: Request, exc: TooLargeError) -> Response:
        return answer(request, 413, "Payload too large", str(exc), field=exc.field)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> Response:
        return answer(request, 422, "Invalid input", str(exc), field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [_located(e) for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = f"{first['field'] or 'body'}: {first['message']}"
        return answer(request, 422, "Invalid request", detail, field=first["field"] or None, errors=errors)

    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # The database is unreachable, restarting or past the statement timeout: the request
        # can be retried, the next connection is made fresh (pool_pre_ping), so the API
        # recovers by itself.
        response = problem(
            503,
            "Service unavailable",
            f"the database is unreachable or did not answer in time ({type(exc).__name__}); "
            "retry in a few seconds",
        )
        response.headers["Retry-After"] = "5"
        return response

    for error in DATABASE_DOWN:
        app.add_exception_handler(error, _database_down)

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database_down(request, exc)
        return problem(500, "Internal error", "a database error; it is logged on the server")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = _TITLES.get(exc.status_code, "Error")
        response = answer(request, exc.status_code, title, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API documents at the request's path (RFC 9110 §15.5.6), from its
    OpenAPI paths, the description clients are generated from."""
    import re

    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            methods |= {m.upper() for m in item if m in ("get", "post", "put", "patch", "delete")}
    return sorted(methods)


class Problem(BaseModel):
    """The body of every error answer (RFC 9457), as ``application/problem+json``."""

    model_config = ConfigDict(extra="allow")  # extension members are allowed

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
}
_MEANINGS = {
    400: "The body could not be read (not UTF-8, or a malformed multipart form)",
    401: "No valid API key: writes need one when keys are configured, reads too with PROTECT_READS",
    404: "No such job",
    409: "Conflict with the current state (a name taken, a job that already ended)",
    413: "The upload or request body is larger than allowed (MAX_UPLOAD_MB, MAX_REQUEST_KB)",
    422: "Invalid input; `field` names it",
    429: "Too many requests for this key or address (RATE_LIMIT); retry after `Retry-After` seconds",
    503: "The database is unreachable or did not answer in time; retry after `Retry-After` seconds",
}
_PROBLEM_SCHEMA = Problem.model_json_schema()


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the problem documents a route can answer with, so that the
    schema says what clients (and schemathesis) receive: ``application/problem+json``."""
    return {
        status: {"description": _MEANINGS[status], "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}
        for status in statuses
    }
