"""/v1/compare: two ranking jobs side by side."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session
from zoorank_app.compare import compare_jobs
from zoorank_app.deps import get_session
from zoorank_app.problems import problem_responses
from zoorank_app.schemas import ComparisonPublic

router = APIRouter(prefix="/v1", tags=["jobs"])

JOB_ID = r"^[0-9a-f]{8,32}$"


@router.get("/compare", response_model=ComparisonPublic, responses=problem_responses(404, 422, 503))
def compare(
    a: str = Query(..., pattern=JOB_ID, description="a ranking job's id (or a unique prefix of 8+)"),
    b: str = Query(..., pattern=JOB_ID, description="the other ranking job"),
    session: Session = Depends(get_session),
) -> ComparisonPublic:
    """Every model of either job with its rank, aggregate and score values in both, and what
    the two jobs were asked differently (dataset, models, scores, options)."""
    return compare_jobs(session, a, b)
