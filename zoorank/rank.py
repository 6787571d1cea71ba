"""The ranking pipeline: dataset + models + scores -> ranking. Used by the CLI and the workers.

Three steps, each usable alone (a Celery task runs :func:`score_model` for one model):

1. :func:`prepare_dataset` -- load, check classes, pick a stratified seeded subsample and the
   class-balanced rows whose layer taps are kept;
2. :func:`score_model` -- one forward pass (or a cache hit) -> every requested score;
3. :func:`rank_models` -- per-score ranks, pool-normalised values, and the top-line ranking
   of the default policy (:mod:`zoorank.policy`) with its uncertainty (:mod:`zoorank.uncertainty`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import traceback
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoorank import __version__
from zoorank.data import ImageDataset, class_balanced_rows, load_dataset, stratified_subsample
from zoorank.data.identity import DatasetIdentity
from zoorank.data.refs import resolve_under_roots
from zoorank.data.subsample import check_class_counts
from zoorank.errors import Cancelled, InvalidInputError, ZoorankError
from zoorank.features.cache import FeatureCache, feature_key
from zoorank.features.extract import FeatureSet, extract_features, prelogits_and_logits, resolve_device
from zoorank.features.preprocess import Preprocessing, architecture_preprocessing
from zoorank.policy import DEFAULT_RANKING, RankingPolicy, job_policy
from zoorank.rank_request import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_SAMPLES_PER_CLASS,
    DEFAULT_SEED,
    check_model_list,
)
from zoorank.scores import ScoreInputs, ScoreOutput, get_score
from zoorank.settings import check_device, default_device
from zoorank.uncertainty import BOOTSTRAP_KEY, bootstrap_values, budgeted, rank_uncertainty
from zoorank.values import as_number
from zoorank.zoo import ModelSpec, create_model, get_model_spec, weights_digest
from zoorank.zoo.specs import default_models

log = logging.getLogger(__name__)


INPUT_SIZE_RANGE = (16, 1024)  # pixels, the side of the square input
BOOTSTRAP_MAX = 1000


@dataclass
class RankOptions:
    """Settings of one ranking. Defaults keep the 8-model offline zoo on ``builtin:digits``
    well under a minute per model on a 2-core CPU: 50 samples per class at 64 px."""

    samples_per_class: int = DEFAULT_SAMPLES_PER_CLASS
    input_size: int | None = DEFAULT_INPUT_SIZE
    tap_images_per_class: int = 5
    seed: int = DEFAULT_SEED
    batch_size: int = 64
    device: str = "auto"
    min_samples_per_class: int = 5
    score_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Resamples of the rows for the ranking's uncertainty (zoorank.uncertainty); 0: no
    # resampling (P(top-1) then reflects only the default's benchmark error).
    bootstrap_resamples: int = 100

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
        hints = typing.get_type_hints(cls)
        options = {name: _check_option_type(name, value, hints[name]) for name, value in options.items()}
        if options.get("input_size") == 0:
            options["input_size"] = None  # 0 or null: each model's own input size, everywhere
        parsed = cls(**options)
        parsed.validate()
        return parsed

    def validate(self) -> None:
        low, high = INPUT_SIZE_RANGE
        if self.input_size is not None and not low <= self.input_size <= high:
            raise InvalidInputError(f"input_size must be between {low} and {high} pixels", field="options")
        if self.batch_size < 1 or min(self.samples_per_class, self.tap_images_per_class, self.seed) < 0:
            raise InvalidInputError(
                "batch_size must be >= 1; samples_per_class, tap_images_per_class and seed >= 0",
                field="options",
            )
        if self.seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {self.seed}", field="options")
        if 0 < self.samples_per_class < self.min_samples_per_class:
            raise InvalidInputError(
                f"samples_per_class {self.samples_per_class} is below min_samples_per_class"
                f" {self.min_samples_per_class}: the scores need that many images of each class; raise"
                " samples_per_class (0 takes every image) or lower min_samples_per_class",
                field="options",
            )
        if not 0 <= self.bootstrap_resamples <= BOOTSTRAP_MAX:
            raise InvalidInputError(
                f"bootstrap_resamples must be between 0 and {BOOTSTRAP_MAX}", field="options"
            )
        check_device(self.device, source="options.device", field="options")
        if self.device == "auto":
            default_device()  # ZOORANK_DEVICE decides: a bad value is refused before any work
        for name, params in self.score_params.items():
            tap_input_size(get_score(name).resolve_params(params), self.input_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_option_type(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it fits the option's annotation (int, int | None, str, or a dict of per-score
    parameter dicts); an integer follows :func:`zoorank.values.as_number`, the rule of every
    request ("50" and 50.0 are 50; true/false are not integers). Raises :class:`InvalidInputError`."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return value
        if kind is int and isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                return as_number(value, f"options.{name}", int, field="options")  # the one number rule
            except InvalidInputError:
                continue  # the message below lists what the option may be
        if kind is str and isinstance(value, str):
            return value
        if (
            typing.get_origin(kind) is dict
            and isinstance(value, dict)
            and all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items())
        ):
            return value
    wanted = {int: "an integer", str: "a string", type(None): "null"}
    names = [wanted.get(k, "an object of {score: {parameter: value}}") for k in allowed]
    raise InvalidInputError(f"options.{name} must be {' or '.join(names)}, got {value!r}", field="options")


# The options that change a score's value: results computed under different values of these
# are not comparable (batch size, device and the resample count change none of them).
VALUE_OPTIONS = ("samples_per_class", "input_size", "tap_images_per_class", "seed", "score_params")


def comparability_key(dataset_fingerprint: str, sample_ids: Sequence[int], options: Mapping[str, Any]) -> str:
    """A short key shared by exactly the results that may be ranked against each other: same
    dataset content, same sample ids, same value-changing options (:data:`VALUE_OPTIONS`)."""
    payload = {
        "dataset": dataset_fingerprint,
        "samples": [int(i) for i in sample_ids],
        "options": {k: options.get(k) for k in VALUE_OPTIONS},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


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
    """Requested score names (validated), or, when none are given (None), the scores of the
    default ranking (:data:`zoorank.policy.DEFAULT_RANKING`): a default job computes what its
    policy uses, and any other score only when it is named. An empty list is refused: it is
    never the default. (A validation job may ask for ground truth alone; it does not call this
    with [].)"""
    if names is None:
        return list(DEFAULT_RANKING.scores)
    if len(names) == 0:
        raise InvalidInputError(
            "the score list is empty; name at least one score, or leave it out for the default set",
            field="scores",
        )
    for name in names:
        get_score(name)
    return list(dict.fromkeys(names))


def resolve_models(names: Sequence[str] | None, *, data_roots: Sequence[str | Path] = ()) -> list[ModelSpec]:
    """Requested model specs (validated), or the whole built-in zoo. ``file:`` weights must lie
    under ``data_roots`` (:func:`check_weight_files`)."""
    check_model_list(names)
    from zoorank.zoo.load import check_reachable

    specs = [get_model_spec(n) for n in (names or default_models())]
    for spec in specs:
        check_reachable(spec)
    check_weight_files(specs, data_roots)
    return specs


def check_weight_files(
    specs: Sequence[ModelSpec], data_roots: Sequence[str | Path], *, trusted: Collection[str] = ()
) -> None:
    """The rule for every path a request names, datasets and weights alike: an ad-hoc ``file:``
    weight lies under one of ``data_roots`` (the CLI's, or the server's ZOORANK_DATA_ROOTS).
    ``trusted`` names are exempt: models an operator registered, whose file was checked then."""
    for spec in specs:
        if spec.weights.startswith("file:") and spec.name not in trusted:
            resolve_under_roots(spec.weights[5:], data_roots, field="models", what="weight file")


def prepare_dataset(
    dataset_ref: str,
    options: RankOptions,
    *,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
    expect: DatasetIdentity | None = None,
) -> PreparedData:
    """Load ``dataset_ref`` and choose the rows; refuses unusable data before any work.
    Reads no image; ``expect`` is the identity a job stored (see :func:`load_dataset`)."""
    dataset = load_dataset(dataset_ref, data_roots=data_roots, upload_dir=upload_dir, expect=expect)
    check_class_counts(
        dataset.labels, min_per_class=options.min_samples_per_class, class_names=dataset.class_names
    )
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
    taps: bool = True,
) -> tuple[FeatureSet, Preprocessing, Any]:
    """Features of ``spec`` on ``prepared`` from the cache, or from one forward pass.

    ``taps=False`` (no score reads this pass's layer taps): the taps of ``prepared.tap_rows``
    are neither kept nor cached, which leaves an entry a fraction of the size; an entry cached
    with them serves too.

    Returns the features, the preprocessing and the model (``None`` on a cache hit: the
    model is only built when a forward pass or an input-space score needs it).
    """
    model = None
    preprocessing = architecture_preprocessing(spec.architecture, options.input_size)
    tap_rows = prepared.tap_rows if taps else np.zeros(0, dtype=np.int64)

    def key_for(rows: np.ndarray) -> str:
        return feature_key(
            architecture=spec.architecture,
            weights_digest=weights_digest(spec),
            preprocessing=preprocessing.key(),
            dataset_fingerprint=prepared.dataset.fingerprint,
            sample_ids=prepared.rows,
            tap_rows=rows,
        )

    key = key_for(tap_rows)
    features = cache.get(key, taps=taps) if cache is not None else None
    if features is None and cache is not None and not taps and prepared.tap_rows.size:
        features = cache.get(key_for(prepared.tap_rows), taps=False)
    if features is None:
        model = create_model(spec)
        features = extract_features(
            model,
            prepared.dataset.read,
            prepared.rows,
            preprocessing,
            tap_rows=tap_rows,
            batch_size=options.batch_size,
            device=options.device,
            progress=progress,
        )
        if cache is not None:
            cache.put(key, features, dataset=prepared.dataset.fingerprint)
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
    bootstrap_scores: Sequence[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stage: Stage = "all",
) -> ModelResult:
    """Features (cached) -> every requested score for one model. A failing score records its
    error and the others go on; a failing forward pass marks the whole model failed.

    ``stage`` splits the work by resource (the service's ``gpu`` and ``cpu`` queues):
    ``"device"`` makes every forward pass the scores need (into ``cache``) and computes the
    scores that need the images or the model; ``"arrays"`` computes the others from the cached
    arrays, and their bootstrap. ``"all"`` does both in one go.

    The scores of the job's ranking policy (or ``bootstrap_scores``) that read arrays only and
    whose resamples fit the budget (:func:`zoorank.uncertainty.budgeted`) are also recomputed on
    ``options.bootstrap_resamples`` resamples of the rows; the values go to
    ``details["bootstrap"]`` of their records (see :mod:`zoorank.uncertainty`).

    Raises:
        Cancelled: raised by ``progress`` (after a batch), or ``should_stop()`` turned true
            before a score: the work stops and nothing is returned.
    """
    versions = _versions()

    def check() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(f"{spec.name}: stopped on request")

    try:
        features, preprocessing, model = get_features(
            prepared, spec, options, cache, progress=progress, taps=reads_job_taps(score_names, options)
        )
    except Cancelled:
        raise
    except ZoorankError as exc:
        return ModelResult(model=spec.name, scores={}, error=str(exc), versions=versions)
    except Exception as exc:  # a model that cannot run must not take the job down
        log.exception("feature extraction failed for %s", spec.name)
        return ModelResult(
            model=spec.name, scores={}, error=f"{type(exc).__name__}: {exc}", versions=versions
        )

    if stage == "device":
        _cache_tap_passes(prepared, spec, [n for n in score_names if not needs_device(n)], options, cache)
        score_names = [n for n in score_names if needs_device(n)]
    elif stage == "arrays":
        score_names = [n for n in score_names if not needs_device(n)]
        if not features.from_cache:
            log.warning("%s: features were not in the cache: computed again on this worker", spec.name)
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
        check()
        size = tap_input_size(
            get_score(name).resolve_params(options.score_params.get(name, {})), options.input_size
        )
        if size == options.input_size:
            records[name] = run_score(name, inputs, options.score_params.get(name, {}))
        else:
            by_size.setdefault(size, []).append(name)
    for size, names in by_size.items():
        check()
        records.update(_score_at_input_size(prepared, spec, names, options, size, cache))
    check()
    wanted = job_policy(score_names).scores if bootstrap_scores is None else bootstrap_scores
    if stage == "device":
        wanted = []  # the bootstrap reads arrays only: the arrays stage does it
    ok = {n: r.seconds for n, r in records.items() if r.value is not None}
    chosen = budgeted(
        [n for n in wanted if n in ok],
        ok,
        features.seconds + sum(r.seconds for r in records.values()),
        resamples=options.bootstrap_resamples,
    )
    if len(wanted) == 1 and not chosen:
        # The ranking's only score: without its resamples the ranking would have no estimate of
        # its noise at all, so it is resampled whatever its cost (when it reads arrays only).
        chosen = [n for n in wanted if n in ok]
    boot = bootstrap_values(
        inputs,
        chosen,
        options.score_params,
        resamples=options.bootstrap_resamples,
        seed=options.seed,
    )
    for name, entries in boot.items():
        records[name].details[BOOTSTRAP_KEY] = entries
    return ModelResult(
        model=spec.name,
        scores=records,
        feature_seconds=features.seconds,
        images_per_second=features.images_per_second,
        from_cache=features.from_cache,
        versions=versions,
    )


Stage = Literal["all", "device", "arrays"]


def reads_job_taps(score_names: Sequence[str], options: RankOptions) -> bool:
    """Whether a score of ``score_names`` reads the layer taps of the job's own forward pass
    (a tap score at the job's input size; the others make their own pass over the tap images)."""
    for name in score_names:
        score = get_score(name)
        params = score.resolve_params(options.score_params.get(name, {}))
        if "taps" in score.needs and tap_input_size(params, options.input_size) == options.input_size:
            return True
    return False


def needs_device(score_name: str) -> bool:
    """Whether a score needs the images or the model (the forward-pass stage computes it)."""
    return bool(set(get_score(score_name).needs) & {"images", "model"})


def _cache_tap_passes(
    prepared: PreparedData,
    spec: ModelSpec,
    score_names: Sequence[str],
    options: RankOptions,
    cache: FeatureCache | None,
) -> None:
    """The extra forward passes (taps at another input size) that ``score_names`` will read,
    made now and cached, so that the arrays stage makes none. A failure is left for the arrays
    stage to record against its scores."""
    sizes = {
        tap_input_size(get_score(n).resolve_params(options.score_params.get(n, {})), options.input_size)
        for n in score_names
    }
    for size in sizes - {options.input_size}:
        try:
            get_features(prepared.tap_images_only(), spec, replace(options, input_size=size), cache)
        except Exception as exc:
            log.warning("taps at %s px failed for %s: %s", size or "native", spec.name, exc)


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
            jsonable(output.details),
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


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: NumPy arrays and scalars to lists and numbers, keys to strings,
    NaN and infinities to ``None``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rank_models(
    values: Mapping[str, Mapping[str, float | None]],
    directions: Mapping[str, str],
    policy: RankingPolicy | None = None,
    *,
    failed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Ranks per score and the top-line ranking.

    Args:
        values: model -> score -> value (``None`` when it failed).
        directions: score -> ``higher`` or ``lower``.
        policy: how the top-line ranking combines the scores (default: the rule for a user's
            own scores, :func:`zoorank.policy.job_policy`).
        failed: model -> why it has no usable value: its forward pass failed, or every score
            did. Such a model is ranked last, with the reason, and takes no part in the
            combination.

    Returns ``{"by_score": {score: [model, ...best first]}, "aggregate": [{"model", "value",
    "rank"}...], "policy": {...}, "rule": str, "left_out": {score: why}, "tie": bool}``:
    ``value`` is the policy's combined value (higher is better; for ``mean_rank`` it is minus
    the mean rank). A model missing a score takes a place below every model that has it
    (:mod:`zoorank.combine`); a score that cannot order the pool is left out and named.
    """
    policy = policy or job_policy(list(directions))
    failed = dict(failed or {})
    usable = {m: v for m, v in values.items() if m not in failed}
    by_score: dict[str, list[str]] = {}
    for score, direction in directions.items():
        scored = [(m, v[score]) for m, v in usable.items() if v.get(score) is not None]
        sign = -1.0 if direction == "higher" else 1.0
        ordered = sorted(scored, key=lambda mv: (sign * float(mv[1]), mv[0]))  # type: ignore[arg-type]
        by_score[score] = [m for m, _ in ordered]
    pool = policy.rank(usable, directions)
    aggregate: list[dict[str, Any]] = [dict(row) for row in pool.rows if "failed" not in row]
    last = len(aggregate) + 1
    failed |= {str(row["model"]): str(row["failed"]) for row in pool.rows if "failed" in row}
    for model in sorted(failed):
        aggregate.append({"model": model, "value": None, "rank": last, "failed": failed[model]})
    return {
        "by_score": by_score,
        "aggregate": aggregate,
        "policy": policy.to_dict(),
        "rule": policy.describe_rule(),
        "used_scores": pool.used,
        "left_out": pool.left_out,
        "tie": pool.tie,
    }


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
        return jsonable(asdict(self))


def summarise(
    results: Sequence[ModelResult], score_names: Sequence[str], policy: RankingPolicy | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Ranks (per score of ``score_names``), pool-normalised values and the top-line ranking of
    ``policy`` (default: :func:`zoorank.policy.job_policy` of ``score_names``) with its
    uncertainty, over finished model results (a model whose forward pass failed is ranked last
    with its error)."""
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
    policy = policy or job_policy(score_names)
    failed = {r.model: str(r.error) for r in results if r.error is not None}
    for r in ok:
        if r.scores and all(rec.value is None for rec in r.scores.values()):
            errors = sorted({str(rec.error) for rec in r.scores.values() if rec.error})
            failed[r.model] = "every score failed: " + "; ".join(errors)
    ranking = rank_models(values, directions, policy, failed=failed)
    ranked = {m: v for m, v in values.items() if m not in failed}
    if not ranked:
        return ranking, pool
    boot = {
        r.model: {
            s: rec.details[BOOTSTRAP_KEY] for s, rec in r.scores.items() if BOOTSTRAP_KEY in rec.details
        }
        for r in ok
        if r.model in ranked
    }
    uncertainty = rank_uncertainty(ranked, boot, policy, directions)
    somewhere = set().union(*(set(b) for b in boot.values())) if boot else set()
    uncertainty["fixed_scores"] = [
        s for s in ranking["used_scores"] if s not in uncertainty["resampled_scores"]
    ]
    # resampled for some models only: their resamples did not fit every model's budget, so
    # the score keeps its point value for all (listed among the fixed ones too)
    uncertainty["partly_resampled_scores"] = sorted(
        (somewhere & set(ranking["used_scores"])) - set(uncertainty["resampled_scores"])
    )
    for row in ranking["aggregate"]:
        if row["model"] in uncertainty["per_model"]:
            row.update(uncertainty["per_model"][row["model"]])
        else:
            row.update({"p_top1": 0.0, "rank_interval": [row["rank"], row["rank"]]})
    ranking["uncertainty"] = {k: v for k, v in uncertainty.items() if k != "per_model"}
    return ranking, pool


def rank(
    dataset_ref: str,
    models: Sequence[str] | None = None,
    scores: Sequence[str] | None = None,
    options: RankOptions | None = None,
    *,
    cache_dir: str | Path | None = None,
    cache: FeatureCache | None = None,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
    on_model: Callable[[str, int, int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Ranking:
    """The whole ranking in-process (``zoorank rank``). Features are cached in ``cache``
    (``FeatureCache.from_settings``: bounded by the setting), or without bound in ``cache_dir``."""
    from zoorank.rank_request import RankRequest  # the request's rules, built on this module

    request = RankRequest(
        dataset_ref,
        None if models is None else list(models),
        None if scores is None else list(scores),
        options or RankOptions(),
    )
    score_names = request.check()
    options = request.options
    specs = resolve_models(request.models, data_roots=data_roots)
    start = time.perf_counter()
    prepared = prepare_dataset(dataset_ref, options, data_roots=data_roots, upload_dir=upload_dir)
    if cache is None and cache_dir is not None:
        cache = FeatureCache(cache_dir)
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
