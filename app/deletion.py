"""Deleting a job or an uploaded dataset with everything stored for it.

A job: its rows (models, scores, ground truth, confirmations and their units) and its files (the
confirmations' checkpoints). A job that has not ended is cancelled first (its queued tasks
revoked, a running task stops at its next cancel check, which finds no job), then deleted: a user
who deletes a job wants it gone, not a 409. The feature cache is keyed by content and shared by
every job on the same data, so a job's deletion leaves it; a dataset's deletion removes its
entries.

An upload: its extracted files and its feature-cache entries. Refused (409) while a job that is
queued or running reads it, or a confirmation that has not ended (it trains on the data);
finished jobs keep their results, which name the upload's fingerprint.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from sqlalchemy import delete, select
from zoorank_app.confirmations import checkpoints_root
from zoorank_app.db import crud
from zoorank_app.db.models import Confirmation, ConfirmUnit, Dataset, GroundTruth, Job, JobModel, ScoreResult
from zoorank_app.db.session import session_scope
from zoorank_app.settings import Settings

from zoorank.errors import ConflictError
from zoorank.features.cache import FeatureCache
from zoorank.states import TERMINAL, JobStatus

log = logging.getLogger(__name__)

OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)


class NotFound(LookupError):
    """No such job or dataset (404)."""


def delete_job(settings: Settings, job_id: str, revoke: Callable[[list[str]], None]) -> str:
    """Delete the job (cancelled first if it has not ended) with its rows and files; returns its
    full id. Raises :class:`NotFound`."""
    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        job_id = job.id
        task_ids = list(job.task_ids or []) if crud.cancel_job(session, job) else []
        confirmations = list(session.scalars(select(Confirmation.id).where(Confirmation.job_id == job_id)))
        session.execute(delete(ConfirmUnit).where(ConfirmUnit.confirmation_id.in_(confirmations)))
        for table in (Confirmation, ScoreResult, GroundTruth, JobModel):
            session.execute(delete(table).where(table.job_id == job_id))
        session.execute(delete(Job).where(Job.id == job_id))
    revoke(task_ids)
    for confirmation_id in confirmations:
        shutil.rmtree(checkpoints_root(settings, confirmation_id), ignore_errors=True)
    log.info("job %s deleted (%d confirmations)", job_id, len(confirmations))
    return job_id


def upload_id(dataset_id: str) -> str:
    """The upload's id, given as ``ID`` or as its reference ``upload:ID``."""
    return dataset_id.removeprefix("upload:")


def delete_dataset(settings: Settings, dataset_id: str) -> Dataset:
    """Delete an uploaded dataset: its row, files and feature-cache entries; returns the row as
    it was. Raises :class:`NotFound`, or ``ConflictError`` (409) while an open job reads it."""
    dataset_id = upload_id(dataset_id)
    ref = f"upload:{dataset_id}"
    with session_scope(settings.database_url) as session:
        row = session.get(Dataset, dataset_id)
        if row is None:
            raise NotFound(f"no uploaded dataset with id {dataset_id}")
        users = list(
            session.scalars(
                select(Job.id).where(Job.dataset == ref, Job.status.in_([str(s) for s in OPEN])).limit(5)
            )
        )
        confirming = session.scalars(  # a finished ranking whose confirmation trains on the data
            select(Confirmation.job_id)
            .join(Job, Job.id == Confirmation.job_id)
            .where(Job.dataset == ref, Confirmation.status.not_in([str(s) for s in TERMINAL]))
            .limit(5)
        )
        users += [f"{job_id} (its confirmation)" for job_id in confirming]
        if users:
            raise ConflictError(
                f"dataset {ref} is used by {'a job' if len(users) == 1 else 'jobs'} not yet ended "
                f"({', '.join(users)}); cancel {'it' if len(users) == 1 else 'them'} "
                "(POST /v1/jobs/{id}/cancel) or wait for the end, then delete the dataset",
                field="dataset",
            )
        session.delete(row)
        session.flush()
        session.expunge(row)
    shutil.rmtree(settings.upload_dir / dataset_id, ignore_errors=True)
    removed = FeatureCache.from_settings(settings).remove_dataset(row.fingerprint)
    log.info("dataset %s deleted (%d feature-cache entries)", ref, removed.removed_entries)
    return row
