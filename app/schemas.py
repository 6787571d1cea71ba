"""Pydantic models at the API edge: XCreate / XPublic / XsPublic{data, count}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from zoorank_app import request_rules as rules

from zoorank.confirm.request import DEFAULT_ETA, DEFAULT_TOP_K, MAX_TOP_K
from zoorank.validation_request import DEFAULT_ALPHA, DEFAULT_LOSS, DEFAULT_MODE, DEFAULT_SEEDS


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (written in UTC): answer with the offset, as RFC 3339
    (the schema's ``date-time``) requires."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class Readiness(BaseModel):
    status: str = Field(examples=["ready", "not ready"])
    checks: dict[str, str] = Field(description="database and broker: ok, or what is wrong")


class ConfirmCreate(BaseModel):
    """A confirmation of a finished ranking (``zoorank.confirm.request.ConfirmRequest``, whose
    checks and defaults these are)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="best-ranked models to fine-tune")
    budget: float | None = Field(
        default=None, gt=0, description="cap in budget_unit; none: the schedule's own cost (see dry_run)"
    )
    budget_unit: Literal["images", "seconds"] = Field(
        "images", description="images: image passes (training and validation); seconds: estimated"
    )
    loss: Literal["ce", "powergrad"] = "ce"
    alpha: float = Field(0.25, gt=0, le=1, description="PowerGrad alpha")
    eta: int = Field(DEFAULT_ETA, ge=2, le=8, description="each rung keeps 1/eta of the models")
    seed: int = Field(0, ge=0)
    settings: rules.TrainSettingsField = Field(
        default=None, examples=[{"epochs": 6, "val_per_class": 20, "train_per_class": 50}]
    )
    dry_run: bool = Field(False, description="answer the plan and its estimated cost; start nothing")

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"dry_run"}, exclude_none=True)


class JobConfirmCreate(ConfirmCreate):
    """A confirmation asked for with the ranking: started when it ends, so no dry run."""

    dry_run: bool = Field(
        False,
        description="false only: POST /v1/jobs/{id}/confirm has dry runs",
        json_schema_extra={"const": False},
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(
        min_length=3, max_length=1024, examples=["builtin:digits"], json_schema_extra=rules.DATASET_REF
    )
    models: rules.ModelList = Field(
        default=None,
        examples=[["mobilenetv2_100", "mobilenetv2_100@random"]],
        description="names (GET /v1/models) or ARCH@SOURCE; omitted: the built-in zoo",
    )
    scores: rules.ScoreList = Field(
        default=None, examples=[["logme", "linear_probe"]], description="omitted: the default ranking's"
    )
    options: rules.RankOptionsField = None
    confirm: JobConfirmCreate | None = Field(
        default=None,
        description="confirm the shortlist once the ranking has finished (as POST /v1/jobs/{id}/confirm;"
        " dry_run is not allowed here)",
    )


class ValidationCreate(BaseModel):
    # The rules are zoorank.groundtruth's (one message for library, CLI and API); the schema says
    # them: the linear mode's loss is ce, PowerGrad's alpha is in (0, 1].
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"allOf": [rules.LINEAR_IS_CE, rules.ALPHA_FOR_POWERGRAD]},
    )

    dataset: str = Field(
        min_length=3, max_length=1024, examples=["builtin:digits"], json_schema_extra=rules.DATASET_REF
    )
    models: rules.ModelList = None
    scores: rules.ScoreSelection = Field(
        default=None, description="None: every non-expensive score; []: none"
    )
    mode: str = Field(DEFAULT_MODE, examples=["linear", "finetune"], json_schema_extra=rules.MODE)
    loss: str = Field(DEFAULT_LOSS, examples=["ce", "powergrad"], json_schema_extra=rules.LOSS)
    alpha: float = Field(DEFAULT_ALPHA, description="PowerGrad alpha in (0, 1]")
    seeds: list[int] = Field(
        default_factory=lambda: list(DEFAULT_SEEDS),
        description="1 to 10 distinct",
        json_schema_extra=rules.SEEDS,
    )
    settings: rules.TrainSettingsField = Field(default=None, examples=[{"epochs": 6, "input_size": 32}])


class ModelProgress(BaseModel):
    model: str
    status: str
    images_done: int = Field(description="images through the network; for a validation job, steps done")
    images_total: int = Field(
        description="images to pass; for a validation job, its steps (scoring when scores were asked"
        " for, then training)"
    )
    attempts: int
    error: str | None
    feature_seconds: float | None
    images_per_second: float | None
    from_cache: bool | None


class JobProgressSummary(BaseModel):
    """The whole job's progress (``zoorank_app.progress.job_progress``)."""

    done: int = Field(description="units finished (whatever their outcome)")
    total: int
    unit: Literal["models", "steps"] = Field(
        description="models for a ranking; steps for a validation (each model scored, then trained)"
    )
    fraction: float = Field(ge=0, le=1)
    elapsed_seconds: float | None = Field(description="since the job started; null while queued")
    eta_seconds: float | None = Field(
        description="units left times the elapsed time per finished unit; null until one has finished"
    )
    text: str = Field(examples=["3 of 8 models done; about 2 min left"])


class ScoreValue(BaseModel):
    model: str
    score: str
    value: float | None
    pool_value: float | None
    direction: str
    params: dict[str, Any]
    details: dict[str, Any]
    seconds: float
    error: str | None


class JobPublic(BaseModel):
    id: str
    kind: str
    status: str
    dataset: str
    dataset_fingerprint: str | None
    models: list[str]
    scores: list[str]
    options: dict[str, Any]
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    error: str | None
    progress: list[ModelProgress] = []
    overall: JobProgressSummary | None = Field(
        default=None, description="the whole job's progress and ETA (null in the job list)"
    )
    results: list[ScoreValue] = []
    ranking: dict[str, Any] | None = None
    sample_ids: list[int] | None = None
    confirm: dict[str, Any] | None = Field(
        default=None, description="the confirmation asked for at submission, started when the ranking ends"
    )
    confirmation: dict[str, Any] | None = Field(
        default=None, description="the job's latest confirmation (POST /v1/jobs/{id}/confirm)"
    )


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int
    offset: int
    limit: int


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@:-]+$")
    architecture: str = Field(min_length=1, max_length=100, json_schema_extra=rules.ARCHITECTURE)
    weights: str = Field(
        description="random, timm, timm:HUB_ID or file:PATH (under a data root)",
        json_schema_extra=rules.WEIGHTS,
    )
    imagenet_top1: float | None = None
    description: str = ""


class ModelPublic(BaseModel):
    name: str
    architecture: str
    weights: str
    imagenet_top1: float | None
    description: str
    builtin: bool


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class DatasetPublic(BaseModel):
    ref: str
    description: str = ""
    classes: int | None = None
    images: int | None = None
    available: bool = True
    fingerprint: str | None = None
    class_names: list[str] | None = Field(default=None, description="in label order")
    class_images: list[int] | None = Field(
        default=None, description="images per class, in the order of class_names (null: not readable here)"
    )


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class ScoreInfo(BaseModel):
    name: str
    family: str
    direction: str
    cost: str
    needs: list[str]
    paper: str
    params: dict[str, Any]
    description: str
    in_default_ranking: bool
    heldout_weighted_tau: float | None = None


class ScoresPublic(BaseModel):
    data: list[ScoreInfo]
    count: int
    default_ranking: dict[str, Any] = Field(description="the default ranking and its provenance")
    summary: str


class LeaderboardRow(BaseModel):
    rank: int
    model: str
    dataset: str
    value: float | None = Field(description="null: every score failed on this model (see failed)")
    failed: str | None = None
    job_id: str
    computed_at: UtcDatetime
    p_top1: float | None = None
    rank_interval: list[int] | None = None
    ground_truth: float | None = None
    ground_truth_mode: str | None = None


class OptionSet(BaseModel):
    """Results ranked together share this: dataset content, sample ids, value-changing options."""

    key: str
    options: dict[str, Any]
    jobs: int
    models: int


class LeaderboardPublic(BaseModel):
    dataset: str
    score: str | None = Field(description="the score ranked by; null: the default ranking")
    direction: str
    policy: dict[str, Any] | None = Field(None, description="the default ranking (when score is null)")
    rule: str | None = Field(None, description="how the rows were ranked, in words")
    left_out: dict[str, str] = Field(
        default_factory=dict, description="score -> why it was left out (equal for every model)"
    )
    uncertainty: dict[str, Any] | None = None
    option_set: OptionSet | None
    option_sets: list[OptionSet]
    data: list[LeaderboardRow]
    count: int
    confirmed: list[dict[str, Any]] = Field(
        default=[],
        description="the pick of every finished confirmation of a ranking on this dataset, newest first"
        " (confirmation, job_id, pick, val_accuracy, val_interval, runner_up, verdict,"
        " agrees_with_ranking, finished_at)",
    )


class ComparedJob(BaseModel):
    id: str
    status: str
    dataset: str
    created_at: UtcDatetime
    ranked_by: str | None = Field(description="the ranking's policy; null while the job has no ranking")
    by_mean_rank: bool = Field(
        False, description="the policy ranks by mean rank: the aggregate is minus the mean rank"
    )


class OptionDifference(BaseModel):
    option: str = Field(examples=["samples_per_class"])
    a: Any
    b: Any


class ScorePair(BaseModel):
    a: float | None = Field(description="the score's raw value in job a (null: not computed or failed)")
    b: float | None


class ComparedModel(BaseModel):
    model: str
    rank_a: int | None = Field(description="1 = best; null: not ranked in job a (absent or no ranking yet)")
    rank_b: int | None
    aggregate_a: float | None = Field(description="the ranking's combined value, higher is better")
    aggregate_b: float | None
    status_a: str | None = Field(description="the model's status in job a; null: not in job a")
    status_b: str | None
    rank_change: int | None = Field(description="rank_a - rank_b: positive when b ranks it higher")
    scores: dict[str, ScorePair]


class ComparisonPublic(BaseModel):
    a: ComparedJob
    b: ComparedJob
    comparable: bool = Field(
        description="same dataset content, sample rows and value-changing options: the values compare"
    )
    differences: list[OptionDifference] = Field(description="what the two jobs were asked, where it differs")
    scores: list[str] = Field(description="every score of either job")
    models: list[ComparedModel] = Field(description="every model of either job, by rank in a, then in b")
