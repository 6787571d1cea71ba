"""Server-rendered HTML: the leaderboard (with bar plots) and job pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.db import crud
from app.deps import get_session
from app.problems import ProblemError
from app.routes.catalogue import leaderboard
from app.routes.jobs import job_public
from zoorank.policy import DEFAULT_RANKING
from zoorank.scores import list_scores

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    score: str | None = Query(None),
    dataset: str | None = Query(None),
    option_set: str | None = Query(None),
    session: Session = Depends(get_session),
) -> HTMLResponse:
    datasets = crud.known_datasets(session)
    dataset = dataset or (datasets[0] if datasets else None)
    score = score or None  # the form's "default ranking" choice sends an empty value
    board = (
        leaderboard(score=score, dataset=dataset, option_set=option_set, session=session) if dataset else None
    )
    values = [row.value for row in board.data] if board else []
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    jobs, _ = crud.list_jobs(session, offset=0, limit=10)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "board": board,
            "datasets": datasets,
            "dataset": dataset,
            "scores": list_scores(),
            "score": score,
            "default": DEFAULT_RANKING,
            "low": low,
            "span": (high - low) or 1.0,
            "jobs": jobs,
        },
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, session: Session = Depends(get_session)) -> HTMLResponse:
    job = crud.get_job(session, job_id)
    if job is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id}")
    public = job_public(session, job)
    table: dict[str, dict[str, float | None]] = {}
    for result in public.results:
        table.setdefault(result.model, {})[result.score] = result.value
    return templates.TemplateResponse(request, "job.html", {"job": public, "table": table})
