"""Tables: jobs, their per-model progress, score results, registered models, uploaded
datasets and ground truth. Keys of results are (job, model, score): writes are upserts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="ranking")
    status: Mapped[str] = mapped_column(String(16), index=True)
    dataset: Mapped[str] = mapped_column(String(1024))
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    # The dataset's version at submission (zoorank.data.identity): a worker that finds the
    # same version takes dataset_fingerprint as it is instead of hashing the data again.
    dataset_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    models: Mapped[list[Any]] = mapped_column(JSON)
    scores: Mapped[list[Any]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    sample_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    ranking: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    task_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # A confirmation to start once the ranking has finished (``POST /v1/jobs`` with ``confirm``).
    confirm: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobModel(Base):
    """Progress and outcome of one model within one job."""

    __tablename__ = "job_models"
    __table_args__ = (UniqueConstraint("job_id", "model", name="uq_job_models_job_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_total: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    feature_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    from_cache: Mapped[bool | None] = mapped_column(nullable=True)
    # The cpu stage found the features gone from the shared cache (evicted, or a cache that is
    # not shared) and made the forward pass again: a cost the split by queue should never have.
    features_recomputed: Mapped[bool | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Written every few seconds by the task that runs the model; a running model without a
    # recent heartbeat lost its worker (see app.sweeper).
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    runner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # its task's id
    resent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ScoreResult(Base):
    """One (job, model, score) value with everything needed to reproduce it."""

    __tablename__ = "score_results"
    __table_args__ = (UniqueConstraint("job_id", "model", "score", name="uq_score_results_job_model_score"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(256), index=True)
    score: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(1024))
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    pool_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    direction: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    sample_ids: Mapped[list[Any]] = mapped_column(JSON)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RegisteredModel(Base):
    """A model added through ``POST /v1/models`` (the built-in zoo lives in code)."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    architecture: Mapped[str] = mapped_column(String(128))
    weights: Mapped[str] = mapped_column(String(1024))
    imagenet_top1: Mapped[float | None] = mapped_column(Float, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    """An uploaded dataset (``upload:ID``)."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    num_images: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    class_names: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GroundTruth(Base):
    """Measured transfer accuracy of one model on one dataset (``zoorank validate``)."""

    __tablename__ = "ground_truth"
    __table_args__ = (UniqueConstraint("job_id", "model", name="uq_ground_truth_job_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(256), index=True)
    dataset: Mapped[str] = mapped_column(String(1024))
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    loss: Mapped[str] = mapped_column(String(16))
    alpha: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy: Mapped[float] = mapped_column(Float)
    accuracy_std: Mapped[float | None] = mapped_column(Float, nullable=True)
    seeds: Mapped[list[Any]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Confirmation(Base):
    """The confirmation stage of a ranking job: its shortlist fine-tuned by successive halving
    (``zoorank.confirm``). ``plan`` is fixed when it is accepted; ``result`` is the answer."""

    __tablename__ = "confirmations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConfirmUnit(Base):
    """One (model, rung) of a confirmation: one task on the ``gpu`` queue. Its outcome
    (``history``, ``val_correct``) is written once, when the rung's checkpoint is on disk."""

    __tablename__ = "confirm_units"
    __table_args__ = (
        UniqueConstraint("confirmation_id", "model", "rung", name="uq_confirm_units_confirmation_model_rung"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    confirmation_id: Mapped[str] = mapped_column(
        ForeignKey("confirmations.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(String(256))
    rung: Mapped[int] = mapped_column(Integer)
    end_epoch: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    history: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    val_correct: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    diverged: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    runner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
