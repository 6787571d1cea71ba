"""/v1/jobs: submit, poll, list, cancel and delete ranking jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from zoorank_app import confirmations, deletion, metrics
from zoorank_app.db import crud
from zoorank_app.db.models import Confirmation, Job, utcnow
from zoorank_app.db.session import session_scope
from zoorank_app.deps import get_session, get_settings_dep, require_writer
from zoorank_app.export import CSV_RESPONSE, FORMAT_HELP, ExportFormat, csv_response, wants_csv
from zoorank_app.problems import ProblemError, problem_responses
from zoorank_app.progress import job_progress
from zoorank_app.schemas import (
    ConfirmCreate,
    JobCreate,
    JobProgressSummary,
    JobPublic,
    JobsPublic,
    ModelProgress,
    ScoreValue,
)
from zoorank_app.services.jobs import Created, submit_ranking
from zoorank_app.settings import Settings

from zoorank.export import job_table
from zoorank.rank_request import FIELDS as RANK_FIELDS
from zoorank.rank_request import RankRequest
from zoorank.states import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(422, 503))


def job_public(session: Session, job: Job, *, full: bool = True) -> JobPublic:
    public = JobPublic.model_validate(job, from_attributes=True)
    if full:
        models = crud.job_models(session, job.id)
        public.progress = [ModelProgress.model_validate(m, from_attributes=True) for m in models]
        public.overall = overall(job, models)
        public.results = [
            ScoreValue.model_validate(r, from_attributes=True) for r in crud.job_results(session, job.id)
        ]
        confirmation = confirmations.latest(session, job.id)
        public.confirmation = confirmations.public(session, confirmation) if confirmation else None
    else:
        public.sample_ids = None
    return public


def overall(job: Job, models: list[Any]) -> JobProgressSummary:
    started = crud.as_utc(job.started_at) if job.started_at is not None else None
    return JobProgressSummary.model_validate(
        job_progress(kind=job.kind, status=job.status, started_at=started, models=models, now=utcnow())
    )


def get_job_or_404(session: Session, job_id: str) -> Job:
    job = crud.get_job(session, job_id)
    if job is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id}")
    return job


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=problem_responses(400, 401),
    dependencies=[Depends(require_writer)],
)
def create_job(
    body: JobCreate, request: Request, settings: Settings = Depends(get_settings_dep)
) -> JSONResponse:
    if body.confirm is not None and body.confirm.dry_run:
        raise ProblemError(
            422,
            "Invalid input",
            "confirm.dry_run applies to POST /v1/jobs/{id}/confirm only",
            field="confirm",
        )
    created = submit_ranking(
        settings,
        RankRequest.from_dict(body.model_dump(include=set(RANK_FIELDS), exclude_none=True)),
        dispatch=request.app.state.dispatch,
        confirm=body.confirm.options() if body.confirm is not None else None,
    )
    metrics.JOBS_SUBMITTED.inc()
    return accepted(created, f"/v1/jobs/{created.id}")


def accepted(created: Created, location: str) -> JSONResponse:
    """202 with the new job's representation as it was accepted (queued, no results yet: built
    from the rows just written, not read back) and its ``Location``."""
    public = JobPublic.model_validate(created.job, from_attributes=True)
    public.progress = [ModelProgress.model_validate(m, from_attributes=True) for m in created.models]
    public.overall = overall(created.job, created.models)
    return JSONResponse(public.model_dump(mode="json"), status_code=202, headers={"Location": location})


@router.get("", response_model=JobsPublic)
def list_jobs(
    session: Session = Depends(get_session),
    offset: int = Query(
        0, ge=0, le=2**62, description="jobs to skip (at most 2^62: the database's integers end there)"
    ),
    limit: int = Query(20, ge=1, le=200),
    status: JobStatus | None = Query(None, description="only jobs in this state"),
) -> JobsPublic:
    jobs, count = crud.list_jobs(session, offset=offset, limit=limit, status=status)
    return JobsPublic(
        data=[job_public(session, j, full=False) for j in jobs],
        count=count,
        offset=offset,
        limit=limit,
    )


@router.get("/{job_id}", response_model=JobPublic, responses={**problem_responses(404), **CSV_RESPONSE})
def get_job(
    job_id: str, request: Request, format: ExportFormat | None = Query(None, description=FORMAT_HELP)
) -> Response:
    """The request clients repeat while a job runs: its session is opened here, not by the
    dependencies (each sync dependency is another hop through the thread pool), and the body
    is serialised once (a returned model would be validated again against ``response_model``).
    As CSV: the job's ranking and scores, one row per model (or a validation's ground truth)."""
    settings: Settings = request.app.state.settings
    with session_scope(settings.database_url) as session:
        public = job_public(session, get_job_or_404(session, job_id))
    if wants_csv(request.headers.get("accept"), format):
        return csv_response(job_table(public.model_dump(mode="json")), f"zoorank-job-{public.id[:8]}.csv")
    return Response(public.model_dump_json(), media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses=problem_responses(401, 404, 409),
    dependencies=[Depends(require_writer)],
)
def cancel_job(job_id: str, request: Request, session: Session = Depends(get_session)) -> JobPublic:
    """Stop a job that has not ended: its queued tasks are revoked, a running model stops at its
    next batch. The job and what it finished stay (``DELETE`` removes them). 409 once it ended."""
    job = get_job_or_404(session, job_id)
    if not crud.cancel_job(session, job):
        raise ProblemError(409, "Conflict", f"job {job_id} already ended ({job.status})")
    session.flush()
    request.app.state.revoke(job.task_ids or [])
    return job_public(session, job)


@router.delete(
    "/{job_id}",
    status_code=204,
    responses=problem_responses(401, 404),
    dependencies=[Depends(require_writer)],
)
def delete_job(job_id: str, request: Request) -> Response:
    """Delete the job with its models, scores, ground truth, confirmations and their files. A
    job that has not ended is cancelled first, then deleted. 204; a second DELETE is a 404."""
    try:
        deletion.delete_job(request.app.state.settings, job_id, request.app.state.revoke)
    except deletion.NotFound as exc:
        raise ProblemError(404, "Not found", str(exc)) from None
    return Response(status_code=204)


def _found(call: Any) -> Any:
    try:
        return call()
    except confirmations.NotFound as exc:
        raise ProblemError(404, "Not found", str(exc)) from None


@router.post(
    "/{job_id}/confirm",
    status_code=202,
    responses={
        200: {"description": "dry_run: the plan and its estimated cost; nothing started"},
        **problem_responses(400, 401, 404, 409),
    },
    dependencies=[Depends(require_writer)],
)
def confirm_job(job_id: str, body: ConfirmCreate, request: Request) -> JSONResponse:
    """Confirm the ranking's shortlist by successive halving over fine-tuning epochs: 202 with
    the confirmation (poll ``GET /v1/jobs/{id}/confirm``); with ``dry_run``, 200 with the plan
    and its estimated cost, and nothing started."""
    settings: Settings = request.app.state.settings
    if body.dry_run:
        return JSONResponse(_found(lambda: confirmations.dry_run(settings, job_id, body.options())))
    confirmation_id = _found(
        lambda: confirmations.submit(settings, job_id, body.options(), request.app.state.send_confirm)
    )
    with session_scope(settings.database_url) as session:
        row = session.get(Confirmation, confirmation_id)
        assert row is not None  # committed by submit
        payload = confirmations.public(session, row)
    return JSONResponse(payload, status_code=202, headers={"Location": f"/v1/jobs/{job_id}/confirm"})


@router.get("/{job_id}/confirm", responses=problem_responses(404))
def get_confirmation(job_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    """The job's latest confirmation: status, progress (rung, epoch x of y, ETA) and answer."""
    job_id = get_job_or_404(session, job_id).id
    row = confirmations.latest(session, job_id)
    if row is None:
        raise ProblemError(
            404, "Not found", f"job {job_id} has no confirmation; POST /v1/jobs/{job_id}/confirm"
        )
    return confirmations.public(session, row)


@router.post(
    "/{job_id}/confirm/cancel",
    responses=problem_responses(401, 404, 409),
    dependencies=[Depends(require_writer)],
)
def cancel_confirmation(job_id: str, request: Request) -> dict[str, Any]:
    """Stop the job's confirmation: a unit mid-rung stops between two steps, writing nothing."""
    return _found(lambda: confirmations.cancel(request.app.state.settings, job_id))
