"""Submitting a ranking job: the request's checks, the job's rows, its tasks queued."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from zoorank_app.db import crud
from zoorank_app.db.models import Job, JobModel
from zoorank_app.db.session import session_scope
from zoorank_app.settings import Settings

from zoorank.data import DatasetIdentity
from zoorank.rank import check_weight_files, prepare_dataset
from zoorank.rank_request import RankRequest, check_model_list
from zoorank.zoo import ModelSpec

Dispatch = Callable[[str, list[str]], list[str]]


@dataclass(frozen=True)
class Created:
    """A job as it was accepted: its row and its models' rows, as committed and queued."""

    job: Job
    models: list[JobModel]

    @property
    def id(self) -> str:
        return self.job.id


def submit_ranking(
    settings: Settings,
    request: RankRequest,
    *,
    dispatch: Dispatch,
    confirm: dict[str, Any] | None = None,
) -> Created:
    """Check the request (:class:`~zoorank.rank_request.RankRequest`, the rules of the library
    and the CLI too), create the job, queue one task per model.

    Every check that can fail on user input runs before anything is queued, and each is
    cheap: names, options, and the dataset's class counts from its cached index
    (:mod:`zoorank.data.identity`; no image is read). What only reading the images can find (an
    image that does not decode) fails the model in its task, with the reason, and the job
    ends ``failed`` or ``partial``. Two transactions: the job and its models, then the task ids.

    ``confirm``: a confirmation (:class:`~zoorank.confirm.request.ConfirmRequest`) to start
    when the ranking has finished; checked here as far as the ranking is not needed (a budget
    in images against its minimum, the classes against the validation split).
    """
    from zoorank.confirm.plan import plan_confirmation
    from zoorank.confirm.request import ConfirmRequest

    score_names = request.check()
    parsed_options, dataset = request.options, request.dataset
    confirm_request = ConfirmRequest.from_dict(confirm) if confirm is not None else None
    with session_scope(settings.database_url) as session:
        specs = job_models(settings, session, request.models)
        prepared = prepare_dataset(
            dataset, parsed_options, data_roots=settings.data_roots, upload_dir=settings.upload_dir
        )
        largest_class = int(np.bincount(prepared.dataset.labels).max()) if len(prepared.dataset.labels) else 0
        if parsed_options.samples_per_class >= largest_class:
            parsed_options.samples_per_class = 0  # what was used: every image (recorded as such)
        if confirm_request is not None and confirm_request.budget_unit == "images":
            # every model's epoch costs the same in images: any order gives the plan's checks
            plan_confirmation([spec.name for spec in specs], prepared.dataset.labels, confirm_request)
        job, rows = crud.create_job(
            session,
            dataset=dataset,
            fingerprint=prepared.dataset.fingerprint,
            version=prepared.dataset.identity.version,
            models=list(dict.fromkeys(spec.name for spec in specs)),
            scores=score_names,
            options=parsed_options.to_dict(),
            images_per_model=len(prepared.rows),
            confirm=confirm_request.to_dict() if confirm_request is not None else None,
        )
    task_ids = dispatch(job.id, list(job.models))
    with session_scope(settings.database_url) as session:
        crud.set_task_ids(session, job.id, task_ids)
    return Created(job, rows)


def job_models(settings: Settings, session: Any, models: Sequence[str] | None) -> list[ModelSpec]:
    """The specs a job will run: registered models, the zoo, or ``ARCH@SOURCE``; ``None`` is the
    whole built-in zoo, an empty list an error. Ad-hoc ``file:`` weights must lie under the
    data roots, like datasets (registered models were checked when registered)."""
    from zoorank.zoo.specs import default_models

    check_model_list(models)
    from zoorank.zoo.load import check_reachable

    specs = crud.resolve_models(session, models or default_models())
    for spec in specs:
        check_reachable(spec, offline=settings.offline)
    if any(spec.weights.startswith("file:") for spec in specs):
        registered = {row.name for row in crud.registered_models(session)}
        check_weight_files(specs, settings.data_roots, trusted=registered)
    return specs


def stored_identity(job: Any) -> DatasetIdentity | None:
    """The dataset identity computed when ``job`` was submitted: its task checks the data
    against it (and does not hash it again) instead of working on data changed since."""
    if not job.dataset_fingerprint:
        return None
    return DatasetIdentity(job.dataset_version or "", job.dataset_fingerprint)
