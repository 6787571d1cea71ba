"""Server-rendered HTML: the leaderboard (with bar plots) and job pages."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from zoorank_app import charts, figures, metrics
from zoorank_app.compare import compare_jobs
from zoorank_app.db import crud
from zoorank_app.deps import get_session, key_allows_writes
from zoorank_app.problems import ProblemError
from zoorank_app.progress import duration
from zoorank_app.routes import catalogue
from zoorank_app.routes.catalogue import leaderboard_of
from zoorank_app.routes.compare import JOB_ID
from zoorank_app.routes.jobs import job_public
from zoorank_app.services.catalogue import add_upload
from zoorank_app.services.jobs import submit_ranking

from zoorank.errors import InvalidInputError, TooLargeError, ZoorankError
from zoorank.explain.model import EXPLAIN_SCORE
from zoorank.policy import DEFAULT_RANKING, score_catalogue
from zoorank.rank_request import RankRequest
from zoorank.scores import list_scores
from zoorank.states import TERMINAL
from zoorank.zoo.load import parameter_count

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
    notice = None
    try:
        board = (
            leaderboard_of(session, score=score, dataset=dataset, option_set=option_set) if dataset else None
        )
    except InvalidInputError as exc:
        if exc.field != "option_set":
            raise
        # the form kept the previous dataset's option set when the dataset was switched
        notice = f"Option set {option_set} has no results on {dataset}; showing its latest option set."
        board = leaderboard_of(session, score=score, dataset=dataset, option_set=None)
    values = [row.value for row in board.data if row.value is not None] if board else []
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    truth_figure = figures.truth_figure(board, score) if board else None
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
            "truth": truth_figure,
            "score_info": next((row for row in score_catalogue() if row["name"] == score), None)
            if score
            else None,
            "low": low,
            "span": (high - low) or 1.0,
            "jobs": jobs,
            "notice": notice,
        },
    )


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    return _new_job_form(request, session, {"dataset": request.query_params.get("dataset", "")})


@router.post("/jobs/new", response_class=HTMLResponse, response_model=None)
async def submit_job_form(request: Request, session: Session = Depends(get_session)) -> Response:
    """The form's submission: the same checks and the same service as ``POST /v1/jobs``; on
    bad input the form comes back with the message and what was entered (the key excepted)."""
    form = await request.form()
    settings = request.app.state.settings
    text = {name: str(form.get(name, "")).strip() for name in ("dataset", "extra_models")}
    sizes = {name: str(form.get(name, "")).strip() for name in ("samples_per_class", "input_size")}
    chosen_models = [str(m) for m in form.getlist("models")]
    chosen_scores = [str(s) for s in form.getlist("scores")]
    entered: dict[str, Any] = {**text, **sizes, "models": chosen_models, "scores": chosen_scores}
    if not key_allows_writes(request, str(form.get("api_key", ""))):
        return _new_job_form(request, session, entered, error="the API key is missing or wrong", status=401)
    models = chosen_models + [m.strip() for m in text["extra_models"].split(",") if m.strip()]
    options = {name: value for name, value in sizes.items() if value}  # text: the request's number rule
    try:
        body = {"dataset": text["dataset"], "models": models, "scores": chosen_scores, "options": options}
        job_id = submit_ranking(settings, RankRequest.from_dict(body), dispatch=request.app.state.dispatch).id
    except ZoorankError as exc:
        return _new_job_form(request, session, entered, error=str(exc), status=422)
    metrics.JOBS_SUBMITTED.inc()
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _new_job_form(
    request: Request,
    session: Session,
    entered: dict[str, Any],
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    scores = [s.model_dump() for s in catalogue.scores().data]
    return templates.TemplateResponse(
        request,
        "new_job.html",
        {
            "datasets": [d.ref for d in catalogue.datasets(session).data],
            "models": [m.name for m in catalogue.models(session).data],
            "scores": scores,
            "entered": entered,
            "error": error,
            "keys_required": request.app.state.keys.required,
        },
        status_code=status,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, session: Session = Depends(get_session)) -> HTMLResponse:
    job = crud.get_job(session, job_id)
    if job is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id}")
    public = job_public(session, job)
    table: dict[str, dict[str, float | None]] = {}
    explanations: dict[str, dict[str, Any]] = {}
    for result in public.results:
        table.setdefault(result.model, {})[result.score] = result.value
        if result.score == EXPLAIN_SCORE and result.details.get("layers"):
            explanations[result.model] = result.details
    return templates.TemplateResponse(
        request,
        "job.html",
        {
            "job": public,
            "table": table,
            "explanations": explanations,
            "png": figures.png_data_uri,
            "keys_required": request.app.state.keys.required,
            "figures": figures.job_figures(public.results),
            "truth": figures.job_truth_figure(session, public),
            "confirm": confirmation_view(public),
            "others": comparable_jobs(session, public) if public.kind == "ranking" else [],
        },
    )


def comparable_jobs(session: Session, job: Any, limit: int = 30) -> list[Any]:
    """Recent ranking jobs to compare ``job`` with: those on its dataset first."""
    recent, _ = crud.list_jobs(session, offset=0, limit=100)
    others = [j for j in recent if j.kind == "ranking" and j.id != job.id]
    return sorted(others, key=lambda j: j.dataset != job.dataset)[:limit]


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    a: str = Query(..., pattern=JOB_ID, description="a ranking job"),
    b: str = Query(..., pattern=JOB_ID, description="the other ranking job"),
    session: Session = Depends(get_session),
) -> HTMLResponse:
    """Two ranking jobs side by side (the same comparison as ``GET /v1/compare``)."""
    return templates.TemplateResponse(request, "compare.html", {"c": compare_jobs(session, a, b)})


def confirmation_view(job: Any) -> dict[str, Any]:
    """What the job page shows of the confirmation stage: whether the form is offered (a
    ranking that finished with a ranking, and no confirmation open), the latest confirmation
    (``app.confirmations.public``) and, once it has an answer, its learning curves."""
    from zoorank_app.confirmations import CONFIRMABLE

    from zoorank.confirm.request import BUDGET_UNITS, DEFAULT_TOP_K, MAX_TOP_K

    latest = job.confirmation
    running = bool(latest) and latest["status"] not in TERMINAL
    ranked = len((job.ranking or {}).get("aggregate", []))
    result = (latest or {}).get("result") or {}
    return {
        "offered": job.kind == "ranking" and job.status in CONFIRMABLE and bool(job.ranking) and not running,
        "running": running,
        "latest": latest,
        "result": result,
        "default_top_k": min(DEFAULT_TOP_K, ranked) if ranked else DEFAULT_TOP_K,
        "max_top_k": MAX_TOP_K,
        "budget_units": BUDGET_UNITS,
        "curves": figures.learning_curves(latest) if result.get("models") else None,
        "colours": {
            row["model"]: charts.PALETTE[i % len(charts.PALETTE)]
            for i, row in enumerate(result.get("models", []))
        },
    }


def percent(value: float | None) -> str:
    """An accuracy in [0, 1] as a percentage ("61.7 %"); a dash when there is none."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def percent_interval(interval: list[float] | None) -> str:
    """An interval of accuracies as "52.0–71.3 %"."""
    if not interval:
        return ""
    low, high = interval
    return f"{100 * low:.1f}–{100 * high:.1f} %"


def sentence(text: str) -> str:
    """``text`` with its first letter capitalised (the rest kept: model names are case-sensitive)
    and without a final full stop (the template adds its own where it needs one)."""
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:]


templates.env.globals.update(duration=duration, pct=percent, pct_interval=percent_interval, sentence=sentence)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    rows = [
        m.model_dump() | {"parameters": parameter_count(m.architecture)}
        for m in catalogue.models(session).data
    ]
    return templates.TemplateResponse(request, "models.html", {"models": rows})


@router.get("/scores", response_class=HTMLResponse)
def scores_page(request: Request) -> HTMLResponse:
    catalogue_ = catalogue.scores()
    return templates.TemplateResponse(
        request,
        "scores.html",
        {"scores": [s.model_dump() for s in catalogue_.data], "default": catalogue_.default_ranking},
    )


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    return _datasets_page(request, session)


@router.post("/datasets", response_class=HTMLResponse)
async def upload_dataset_form(request: Request, session: Session = Depends(get_session)) -> HTMLResponse:
    """The upload form: the same service (and checks) as ``POST /v1/datasets``; each refusal
    is shown on the page with its reason."""
    form = await request.form()
    settings = request.app.state.settings
    upload = form.get("file")
    if not key_allows_writes(request, str(form.get("api_key", ""))):
        return _datasets_page(request, session, error="the API key is missing or wrong", status=401)
    if upload is None or isinstance(upload, str) or not upload.filename:
        return _datasets_page(request, session, error="choose an archive to upload", status=422)
    try:
        row, created = add_upload(
            settings, session, upload.file, name=str(form.get("name", "")) or upload.filename
        )
    except ZoorankError as exc:
        status = 413 if isinstance(exc, TooLargeError) else 422
        return _datasets_page(request, session, error=str(exc), status=status)
    return _datasets_page(request, session, added=f"upload:{row.id}", status=201 if created else 200)


def _datasets_page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    added: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    rows = [
        d.model_dump() | {"thumbnails": figures.thumbnails(request.app.state.settings, d.ref)}
        for d in catalogue.datasets(session, request.app.state.settings).data
    ]
    return templates.TemplateResponse(
        request,
        "datasets.html",
        {
            "datasets": rows,
            "error": error,
            "added": added,
            "existing": added is not None and status == 200,  # a deduplicated upload
            "keys_required": request.app.state.keys.required,
        },
        status_code=status,
    )
