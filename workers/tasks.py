"""Celery tasks: one per (job, model), and the chord callback that closes the job."""

from __future__ import annotations

from typing import Any

from app import services
from app.settings import get_settings
from workers.celery_app import celery_app


@celery_app.task(name="zoorank.rank_model", acks_late=True, reject_on_worker_lost=True)
def rank_model(job_id: str, model: str) -> dict[str, Any]:
    return services.run_model(get_settings(), job_id, model)


@celery_app.task(name="zoorank.finalise_job", acks_late=True, reject_on_worker_lost=True)
def finalise_job(member_results: list[dict[str, Any]], job_id: str) -> str:
    return services.finalise_job(get_settings(), job_id)


@celery_app.task(name="zoorank.validate_job", acks_late=True, reject_on_worker_lost=True)
def validate_job(job_id: str) -> str:
    return services.run_validation(get_settings(), job_id)
