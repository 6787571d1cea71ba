"""The ranking pipeline: dataset + models + scores -> ranking. Used by the CLI and the workers.

Three steps, each usable alone (a Celery task runs :func:`score_model` for one model):

1. :func:`prepare_dataset` -- load, check classes, pick a stratified seeded subsample and the
   class-balanced rows whose layer taps are kept;
2. :func:`score_model` -- one forward pass (or a cache hit) -> every requested score;
3. :func:`rank_models` -- per-score ranks, pool-normalised values, and an aggregate rank.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from zoorank import __version__
from zoorank.data import ImageDataset, class_balanced_rows, load_dataset, stratified_subsample
from zoorank.data.subsample import check_class_counts
from zoorank.errors import InvalidInputError, ZoorankError
from zoorank.features.cache import FeatureCache, feature_key
from zoorank.features.extract import FeatureSet, extract_features, prelogits_and_logits, resolve_device
from zoorank.features.preprocess import Preprocessing, architecture_preprocessing
from zoorank.scores import ScoreInputs, ScoreOutput, get_score, list_scores
from zoorank.zoo import ModelSpec, create_model, get_model_spec, weights_digest
from zoorank.zoo.specs import default_models

log = logging.getLogger(__name__)


@dataclass
class RankOptions:
    """Settings of one ranking. Defaults keep the 8-model offline zoo on ``builtin:digits``
    well under a minute per model on a 2-core CPU: 50 samples per class at 64 px."""

    samples_per_class: int = 50
    input_size: int | None = 64
    tap_images_per_class: int = 5
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    min_samples_per_class: int = 5
    score_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> RankOptions:
        options = dict(options or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}",
                field="options",
            )
        try:
            parsed = cls(**options)
        except TypeError as exc:
            raise InvalidInputError(str(exc), field="options") from None
        parsed.validate()
        return parsed

    def validate(self) -> None:
        if self.input_size is not None and not 16 <= self.input_size <= 1024:
            raise InvalidInputError("input_size must be between 16 and 1024 pixels", field="options")
        if self.batch_size < 1 or self.samples_per_class < 0 or self.tap_images_per_class < 0:
            raise InvalidInputError(
                "batch_size must be >= 1; samples_per_class and tap_images_per_class >= 0",
                field="options",
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise InvalidInputError("device must be auto, cpu or cuda", field="options")
        for name, params in self.score_params.items():
            tap_input_size(get_score(name).resolve_params(params), self.input_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedData:
    """A dataset with the rows a ranking uses: ``rows`` (sample ids) and ``tap_rows``
    (positions into ``rows``)."""

    dataset: ImageDataset
    rows: np.ndarray
    tap_rows: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels[self.rows]

    def tap_images_only(self) -> PreparedData:
        """Only the tapped images, each one tapped: what a forward pass for taps at another
        resolution needs."""
        return PreparedData(self.dataset, self.rows[self.tap_rows], np.arange(self.tap_rows.size))


@dataclass
class ScoreRecord:
    """One (model, score) result: value or error, with what is needed to reproduce it."""

    score: str
    value: float | None
    direction: str
    params: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class ModelResult:
    """Everything computed for one model: its scores and how the features were obtained."""

    model: str
    scores: dict[str, ScoreRecord]
    feature_seconds: float = 0.0
    images_per_second: float = 0.0
    from_cache: bool = False
    error: str | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_scores(names: Sequence[str] | None) -> list[str]:
    """Requested score names (validated), or the default set: every score that is not
    ``expensive``."""
    if names is None or len(names) == 0:
        return [n for n in list_scores() if get_score(n).cost != "expensive"]
    for name in names:
        get_score(name)
    return list(dict.fromkeys(names))


def resolve_models(names: Sequence[str] | None) -> list[ModelSpec]:
    """Requested model specs (validated), or the whole built-in zoo."""
    if names is not None and len(names) == 0:
        raise InvalidInputError("the model list is empty; name at least one model", field="models")
    return [get_model_spec(n) for n in (names or default_models())]


def prepare_dataset(
    dataset_ref: str,
    options: RankOptions,
    *,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
) -> PreparedData:
    """Load ``dataset_ref`` and choose the rows; refuses unusable data before any work."""
    dataset = load_dataset(dataset_ref, data_roots=data_roots, upload_dir=upload_dir)
    check_class_counts(dataset.labels, min_per_class=options.min_samples_per_class)
    rows = stratified_subsample(dataset.labels, options.samples_per_class, seed=options.seed)
    tap_rows = class_balanced_rows(dataset.labels[rows], options.tap_images_per_class)
    return PreparedData(dataset=dataset, rows=rows, tap_rows=tap_rows)


def _versions() -> dict[str, str]:
    import timm
    import torch

    return {"zoorank": __version__, "torch": torch.__version__, "timm": timm.__version__}


def _model_callable(model: Any, device: str) -> Callable[..., Any]:
    dev = resolve_device(device)
    model = model.to(dev).eval()

    def prelogits(images: Any) -> Any:
        return prelogits_and_logits(model, images.to(dev))[0]

    return prelogits


def get_features(
    prepared: PreparedData,
    spec: ModelSpec,
    options: RankOptions,
    cache: FeatureCache | None,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[FeatureSet, Preprocessing, Any]:
    """Features of ``spec`` on ``prepared`` from the cache, or from one forward pass.

    Returns the features, the preprocessing and the model (``None`` on a cache hit: the
    model is only built when a forward pass or an input-space score needs it).
    """
    model = None
    preprocessing = architecture_preprocessing(spec.architecture, options.input_size)
    key = feature_key(
        architecture=spec.architecture,
        weights_digest=weights_digest(spec),
        preprocessing=preprocessing.key(),
        dataset_fingerprint=prepared.dataset.fingerprint,
        sample_ids=prepared.rows,
        tap_rows=prepared.tap_rows,
    )
    features = cache.get(key) if cache is not None else None
    if features is None:
        model = create_model(spec)
        features = extract_features(
            model,
            prepared.dataset.read,
            prepared.rows,
            preprocessing,
            tap_rows=prepared.tap_rows,
            batch_size=options.batch_size,
            device=options.device,
            progress=progress,
        )
        if cache is not None:
            cache.put(key, features)
    elif progress is not None:
        progress(len(prepared.rows))
    return features, preprocessing, model


def score_inputs(
    labels: np.ndarray,
    features: FeatureSet,
    spec: ModelSpec,
    seed: int,
    *,
    images: np.ndarray | None = None,
    model: Callable[..., Any] | None = None,
) -> ScoreInputs:
    """What every score sees of one model's forward pass over ``labels``' samples."""
    return ScoreInputs(
        labels=labels,
        features=features.prelogits,
        logits=features.logits,
        taps=features.taps or None,
        tap_rows=features.tap_rows if features.taps else None,
        images=images,
        model=model,
        meta={"imagenet_top1": spec.imagenet_top1, "architecture": spec.architecture},
        seed=seed,
    )


def score_model(
    prepared: PreparedData,
    spec: ModelSpec,
    score_names: Sequence[str],
    options: RankOptions,
    *,
    cache: FeatureCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> ModelResult:
    """Features (cached) -> every requested score for one model. A failing score records its
    error and the others go on; a failing forward pass marks the whole model failed."""
    versions = _versions()
    try:
        features, preprocessing, model = get_features(prepared, spec, options, cache, progress=progress)
    except ZoorankError as exc:
        return ModelResult(model=spec.name, scores={}, error=str(exc), versions=versions)
    except Exception as exc:  # a model that cannot run must not take the job down
        log.exception("feature extraction failed for %s", spec.name)
        return ModelResult(
            model=spec.name, scores={}, error=f"{type(exc).__name__}: {exc}", versions=versions
        )

    labels = prepared.labels
    needs = {need for name in score_names for need in get_score(name).needs}
    images = model_fn = None
    if needs & {"images", "model"}:
        images = preprocessing(prepared.dataset.read(prepared.rows)).numpy()
        if model is None:
            model = create_model(spec)
        model_fn = _model_callable(model, options.device)
    inputs = score_inputs(labels, features, spec, options.seed, images=images, model=model_fn)
    records = {}
    by_size: dict[int | None, list[str]] = {}
    for name in score_names:
        size = tap_input_size(
            get_score(name).resolve_params(options.score_params.get(name, {})), options.input_size
        )
        if size == options.input_size:
            records[name] = run_score(name, inputs, options.score_params.get(name, {}))
        else:
            by_size.setdefault(size, []).append(name)
    for size, names in by_size.items():
        records.update(_score_at_input_size(prepared, spec, names, options, size, cache))
    return ModelResult(
        model=spec.name,
        scores=records,
        feature_seconds=features.seconds,
        images_per_second=features.images_per_second,
        from_cache=features.from_cache,
        versions=versions,
    )


def tap_input_size(params: Mapping[str, Any], job_size: int | None) -> int | None:
    """The input size (pixels; None = the model's own) at which a score wants its layer taps.

    A score with an ``input_size`` parameter may ask for taps at another resolution than the
    job's shared forward pass: ``"job"`` (the shared pass), ``"native"`` or ``0`` (the
    model's own resolution, as timm's pretrained config gives it) or a number of pixels.
    Scores without the parameter use the job's pass.

    Raises:
        InvalidInputError: a value that is none of these, or pixels outside 16..1024.
    """
    value = str(params.get("input_size", "job")).strip().lower()
    if value == "job":
        return job_size
    if value in ("native", "0"):
        return None
    try:
        size = int(value)
    except ValueError:
        raise InvalidInputError(
            f"input_size must be 'job', 'native' or a number of pixels, got {value!r}", field="params"
        ) from None
    if not 16 <= size <= 1024:
        raise InvalidInputError("input_size must be between 16 and 1024 pixels", field="params")
    return size


def _score_at_input_size(
    prepared: PreparedData,
    spec: ModelSpec,
    score_names: Sequence[str],
    options: RankOptions,
    size: int | None,
    cache: FeatureCache | None,
) -> dict[str, ScoreRecord]:
    """Scores that asked for taps at another resolution: a second forward pass (or a cache
    hit) over the tap images only, then each score. A failing pass fails these scores only."""
    tap_only = prepared.tap_images_only()
    try:
        features, _, _ = get_features(tap_only, spec, replace(options, input_size=size), cache)
    except Exception as exc:
        log.warning("taps at %s px failed for %s: %s", size or "native", spec.name, exc)
        error = f"taps at input_size={size or 'native'}: {type(exc).__name__}: {exc}"
        records = {}
        for name in score_names:
            score = get_score(name)
            params = score.resolve_params(options.score_params.get(name, {}))
            records[name] = ScoreRecord(name, None, score.direction, params, error=error)
        return records
    inputs = score_inputs(tap_only.labels, features, spec, options.seed)
    return {name: run_score(name, inputs, options.score_params.get(name, {})) for name in score_names}


def run_score(name: str, inputs: ScoreInputs, params: Mapping[str, Any]) -> ScoreRecord:
    """One score on ``inputs``; errors are recorded, not raised."""
    spec = get_score(name)
    resolved = spec.resolve_params(params)
    start = time.perf_counter()
    try:
        output: ScoreOutput = spec(inputs, **resolved)
        value: float | None = float(output.value)
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise InvalidInputError(f"score {name} came out non-finite ({value})")
        return ScoreRecord(
            name,
            value,
            spec.direction,
            resolved,
            _jsonable(output.details),
            time.perf_counter() - start,
        )
    except Exception as exc:
        if not isinstance(exc, ZoorankError):
            log.warning("score %s failed: %s", name, traceback.format_exc())
        return ScoreRecord(
            name,
            None,
            spec.direction,
            resolved,
            {},
            time.perf_counter() - start,
            error=f"{type(exc).__name__}: {exc}",
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# The scores the aggregate rank averages when a job asks for them: those statistically tied for
# best on both targets of the ranking benchmark (benchmarks/results/ranking.md, mean weighted
# tau 0.49-0.70). Scores whose ranking went the wrong way there (the paper's Betti theta and
# its quantile/AUC variants, translation sensitivity) or was near zero (LogME, H-score) are
# still computed, ranked and stored, but a job's top-line ranking does not follow them. When a
# job requests none of these, every requested score counts.
AGGREGATE_SCORES = (
    "ncti",
    "linear_probe",
    "gbc",
    "betti_slope_norm",
    "hidden_fragmentation",
    "constrained_margin",
    "leep",
    "betti_slope",
    "nce",
)


def aggregate_scores(score_names: Sequence[str]) -> list[str]:
    """The requested scores that the aggregate rank averages (see :data:`AGGREGATE_SCORES`)."""
    chosen = [s for s in score_names if s in AGGREGATE_SCORES]
    return chosen or list(score_names)


def rank_models(
    values: Mapping[str, Mapping[str, float | None]],
    directions: Mapping[str, str],
    aggregate_over: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Ranks per score and an aggregate.

    Args:
        values: model -> score -> value (``None`` when it failed).
        directions: score -> ``higher`` or ``lower``.
        aggregate_over: the scores whose ranks the aggregate averages (default: all).

    Returns ``{"by_score": {score: [model, ...best first]}, "aggregate": [{"model", "mean_rank",
    "rank"}...], "aggregate_scores": [...]}``. Ranks start at 1; ties share the mean rank; a
    model missing a score is left out of that score's ranking and its aggregate averages the
    scores it has.
    """
    counted = set(directions if aggregate_over is None else aggregate_over)
    by_score: dict[str, list[str]] = {}
    ranks: dict[str, list[float]] = {model: [] for model in values}
    for score, direction in directions.items():
        scored = [(m, v[score]) for m, v in values.items() if v.get(score) is not None]
        sign = -1.0 if direction == "higher" else 1.0
        ordered = sorted(scored, key=lambda mv: (sign * float(mv[1]), mv[0]))  # type: ignore[arg-type]
        by_score[score] = [m for m, _ in ordered]
        keyed = np.asarray([sign * float(v) for _, v in scored])  # type: ignore[arg-type]
        if score not in counted:
            continue
        for (model, _), r in zip(scored, rankdata(keyed), strict=True):
            ranks[model].append(float(r))
    aggregate = [{"model": m, "mean_rank": float(np.mean(r))} for m, r in ranks.items() if r]
    aggregate.sort(key=lambda row: (row["mean_rank"], row["model"]))
    for position, row in enumerate(aggregate, start=1):
        row["rank"] = position
    return {"by_score": by_score, "aggregate": aggregate, "aggregate_scores": sorted(counted)}


def pool_normalised(results: Sequence[ModelResult]) -> dict[str, dict[str, float]]:
    """Pool-relative values (e.g. NCTI) over one job's models: score -> model -> value."""
    out: dict[str, dict[str, float]] = {}
    names = {name for r in results for name in r.scores}
    for name in sorted(names):
        spec = get_score(name)
        if spec.pool_normalise is None:
            continue
        ok = [r for r in results if name in r.scores and r.scores[name].value is not None]
        if len(ok) < 2:
            continue
        outputs = [ScoreOutput(r.scores[name].value or 0.0, r.scores[name].details) for r in ok]
        out[name] = dict(zip([r.model for r in ok], spec.pool_normalise(outputs), strict=True))
    return out


@dataclass
class Ranking:
    """A whole ranking: settings, per-model results, ranks."""

    dataset: str
    dataset_fingerprint: str
    options: dict[str, Any]
    sample_ids: list[int]
    results: list[ModelResult]
    ranking: dict[str, Any]
    pool: dict[str, dict[str, float]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def summarise(
    results: Sequence[ModelResult], score_names: Sequence[str]
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Ranks and pool-normalised values of finished model results."""
    ok = [r for r in results if r.error is None]
    pool = pool_normalised(ok)
    values: dict[str, dict[str, float | None]] = {
        r.model: {
            s: (pool[s][r.model] if s in pool and r.model in pool[s] else rec.value)
            for s, rec in r.scores.items()
        }
        for r in ok
    }
    directions = {s: get_score(s).direction for s in score_names}
    return rank_models(values, directions, aggregate_scores(score_names)), pool


def rank(
    dataset_ref: str,
    models: Sequence[str] | None = None,
    scores: Sequence[str] | None = None,
    options: RankOptions | None = None,
    *,
    cache_dir: str | Path | None = None,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
    on_model: Callable[[str, int, int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Ranking:
    """The whole ranking in-process (``zoorank rank``)."""
    options = options or RankOptions()
    options.validate()
    specs = resolve_models(models)
    score_names = resolve_scores(scores)
    start = time.perf_counter()
    prepared = prepare_dataset(dataset_ref, options, data_roots=data_roots, upload_dir=upload_dir)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    results = []
    for i, spec in enumerate(specs):
        if on_model is not None:
            on_model(spec.name, i, len(specs))
        results.append(score_model(prepared, spec, score_names, options, cache=cache, progress=progress))
    ranking, pool = summarise(results, score_names)
    return Ranking(
        dataset=dataset_ref,
        dataset_fingerprint=prepared.dataset.fingerprint,
        options=options.to_dict(),
        sample_ids=[int(i) for i in prepared.rows],
        results=results,
        ranking=ranking,
        pool=pool,
        seconds=time.perf_counter() - start,
    )
