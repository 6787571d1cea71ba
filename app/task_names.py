"""The Celery task names: the API sends tasks by these names (:mod:`app.dispatch`), routes them
(:mod:`app.celery_client`) and reads them from queued messages (:mod:`app.broker_contents`); the
workers register their tasks under them (``workers.tasks``)."""

from __future__ import annotations

EXTRACT_MODEL = "zoorank.extract_model"  # a ranking model's forward passes (gpu)
RANK_MODEL = "zoorank.rank_model"  # its other scores, from the cached arrays (cpu)
FINALISE_JOB = "zoorank.finalise_job"  # the chord's callback that closes a ranking job
VALIDATE_JOB = "zoorank.validate_job"  # a validation (ground truth) job
CONFIRM_UNIT = "zoorank.confirm_unit"  # one (model, rung) of a confirmation

TASK_NAMES = (EXTRACT_MODEL, RANK_MODEL, FINALISE_JOB, VALIDATE_JOB, CONFIRM_UNIT)
