"""/v1/validations: ground truth (linear probe or fine-tuning) and each score's agreement."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from zoorank_app.deps import get_session, get_settings_dep, require_writer
from zoorank_app.problems import ProblemError, problem_responses
from zoorank_app.routes.jobs import accepted, get_job_or_404, job_public
from zoorank_app.schemas import JobPublic, ValidationCreate
from zoorank_app.services.validations import submit_validation
from zoorank_app.settings import Settings

router = APIRouter(prefix="/v1/validations", tags=["validations"], responses=problem_responses(422, 503))


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses=problem_responses(400, 401),
    dependencies=[Depends(require_writer)],
)
def create_validation(
    body: ValidationCreate, request: Request, settings: Settings = Depends(get_settings_dep)
) -> JSONResponse:
    created = submit_validation(
        settings,
        dataset=body.dataset,
        models=body.models,
        scores=body.scores,
        mode=body.mode,
        loss=body.loss,
        alpha=body.alpha,
        seeds=body.seeds,
        train_settings=body.settings,
        dispatch=request.app.state.dispatch_validation,
    )
    return accepted(created, f"/v1/validations/{created.id}")


@router.get("/{job_id}", response_model=JobPublic, responses=problem_responses(404))
def get_validation(job_id: str, session: Session = Depends(get_session)) -> JobPublic:
    job = get_job_or_404(session, job_id)
    if job.kind != "validation":
        raise ProblemError(404, "Not found", f"job {job_id} is a {job.kind} job, not a validation")
    return job_public(session, job)
