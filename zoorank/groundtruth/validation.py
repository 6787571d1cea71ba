"""``validate``: ground truth for each model and how well every score's ranking agreed with it.

This is what ``zoorank validate`` and ``POST /v1/validations`` run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoorank.data import DatasetIdentity, class_balanced_rows, load_dataset
from zoorank.data.subsample import check_class_counts
from zoorank.errors import ZoorankError
from zoorank.features.cache import FeatureCache
from zoorank.groundtruth.agreement import (
    Agreement,
    best_within_noise,
    count_above_twin,
    few_models_warning,
    score_agreement,
    seed_agreement,
)
from zoorank.groundtruth.training import (
    RunResult,
    Split,
    TrainSettings,
    check_request,
    finetune_accuracy,
    linear_probe_accuracy,
)
from zoorank.rank import (
    ModelResult,
    PreparedData,
    RankOptions,
    _versions,
    get_features,
    jsonable,
    resolve_models,
    resolve_scores,
    score_model,
    summarise,
)
from zoorank.scores import get_score
from zoorank.validation_request import DEFAULT_MODE, DEFAULT_SEEDS
from zoorank.zoo import ModelSpec, create_model

log = logging.getLogger(__name__)


@dataclass
class GroundTruth:
    """One model's ground truth: mean and std of test accuracy over seeds, and every run."""

    model: str
    accuracy: float | None
    accuracy_std: float | None
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class ValidationResult:
    """Everything :func:`validate` found; ``to_dict()`` is plain JSON.

    ``scores``: model -> score -> value as ranked (pool-normalised where the score has a pool
    step), ``None`` when the score failed (``score_errors`` says why). ``agreement``: one entry
    per score (see :class:`zoorank.groundtruth.agreement.Agreement`). ``best``: per statistic the
    best score and those statistically tied with it. ``above_random``: per score, how many
    pretrained models it puts above their random-init twin (``ARCH@random`` in the pool).
    ``score_seconds``: time spent in each score over all models (features excluded).
    ``warnings`` (a property, also in ``to_dict()``): e.g. too few models for rank agreement.
    """

    dataset: str
    dataset_fingerprint: str
    mode: str
    loss: str
    alpha: float | None
    seeds: list[int]
    settings: dict[str, Any]
    rank_options: dict[str, Any]
    split: dict[str, int]
    ground_truth: list[GroundTruth]
    scores: dict[str, dict[str, float | None]]
    score_errors: dict[str, dict[str, str]]
    agreement: list[Agreement]
    best: dict[str, Any]
    seed_agreement: dict[str, Any]
    above_random: dict[str, dict[str, int]]
    aggregate_ranking: list[dict[str, Any]]
    score_seconds: dict[str, float]
    seconds: float
    versions: dict[str, str]

    def accuracy(self) -> dict[str, float]:
        """model -> mean test accuracy, for the models that trained."""
        return {g.model: g.accuracy for g in self.ground_truth if g.accuracy is not None}

    @property
    def warnings(self) -> list[str]:
        """What a reader must know before trusting the agreement (too few models to rank)."""
        few = few_models_warning(len(self.accuracy()))
        return [few] if few else []

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(asdict(self))
        out["agreement"] = [jsonable(a.to_dict()) for a in self.agreement]
        out["warnings"] = self.warnings
        return out


def compare_with_ground_truth(
    values: Mapping[str, Mapping[str, float | None]],
    directions: Mapping[str, str],
    accuracy_by_seed: Mapping[int, Mapping[str, float]],
    *,
    twins: Mapping[str, str] | None = None,
    resamples: int = 1000,
) -> dict[str, Any]:
    """Every statistic of :class:`ValidationResult` from stored numbers (no training).

    Args:
        values: score -> model -> value (``None``: missing).
        directions: score -> ``higher`` / ``lower``.
        accuracy_by_seed: seed -> model -> test accuracy; the ground truth is the mean over
            seeds of the models present in every seed.
        twins: pretrained model -> its random-init twin, for ``above_random``.

    Returns ``{"accuracy", "agreement": [Agreement], "best", "seed_agreement",
    "above_random"}`` as :func:`validate` fills them.
    """
    seeds = sorted(accuracy_by_seed)
    models = [m for m in accuracy_by_seed[seeds[0]] if all(m in accuracy_by_seed[s] for s in seeds)]
    accuracy = {m: float(np.mean([accuracy_by_seed[s][m] for s in seeds])) for m in models}
    by_score = {name: {m: values[name].get(m) for m in accuracy} for name in values}
    agreement = [
        score_agreement(by_score[name], accuracy, direction=directions[name], score=name, resamples=resamples)
        for name in values
    ]
    best = (
        {
            stat: best_within_noise(by_score, directions, accuracy, statistic=stat, resamples=resamples)
            for stat in ("weighted_tau", "kendall_tau")
        }
        if values and resamples > 0
        else {}
    )
    return {
        "accuracy": accuracy,
        "agreement": agreement,
        "best": best,
        "seed_agreement": seed_agreement(accuracy_by_seed, resamples=resamples) if len(seeds) > 1 else {},
        "above_random": {
            name: count_above_twin(by_score[name], directions[name], twins or {}) for name in values
        },
    }


def _twins(specs: Sequence[ModelSpec]) -> dict[str, str]:
    """pretrained model -> the random-init model of the same architecture in the pool."""
    randoms = {s.architecture: s.name for s in specs if s.is_random}
    return {s.name: randoms[s.architecture] for s in specs if not s.is_random and s.architecture in randoms}


def _linear_runs(
    prepared_all: PreparedData,
    split: Split,
    spec: ModelSpec,
    options: RankOptions,
    cache: FeatureCache | None,
    seeds: Sequence[int],
) -> list[RunResult]:
    start = time.perf_counter()
    features, _, _ = get_features(prepared_all, spec, options, cache)
    x, rows = features.prelogits, prepared_all.rows
    labels = prepared_all.dataset.labels

    def part(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.isin(rows, wanted)
        return x[mask], labels[rows[mask]]

    (tx, ty), (vx, vy), (sx, sy) = part(split.train), part(split.val), part(split.test)
    test_acc, val_acc, c = linear_probe_accuracy(tx, ty, vx, vy, sx, sy)
    seconds = time.perf_counter() - start
    # Deterministic: every seed gives the same probe, recorded once per seed for uniformity.
    return [
        RunResult(seed=s, accuracy=test_acc, val_accuracy=val_acc, seconds=seconds, history=[{"C": c}])
        for s in seeds
    ]


def validate(
    dataset_ref: str,
    models: Sequence[str] | None = None,
    *,
    mode: str = DEFAULT_MODE,
    loss: str = "ce",
    alpha: float = 0.25,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    scores: Sequence[str] | None = None,
    settings: TrainSettings | Mapping[str, Any] | None = None,
    rank_options: RankOptions | Mapping[str, Any] | None = None,
    resamples: int = 1000,
    cache_dir: str | Path | None = None,
    cache: FeatureCache | None = None,
    data_roots: Sequence[str | Path] = (),
    upload_dir: str | Path | None = None,
    expect: DatasetIdentity | None = None,
    on_model: Callable[[str, str, int, int], None] | None = None,
    on_truth: Callable[[GroundTruth], None] | None = None,
) -> ValidationResult:
    """Ground truth for every model on ``dataset_ref`` and each score's agreement with it.

    Steps: load the dataset and split it (stratified, ``settings.split_seed``) into train /
    validation / test; score every model on the *train* rows with the ranking pipeline
    (``zoorank.rank.score_model`` + ``summarise``, features cached); train each model on the
    train rows (``mode``) once per seed and take its test accuracy; compare every score's
    ranking with the mean accuracy over seeds.

    Args:
        dataset_ref: a dataset reference (``builtin:digits``, ``folder:PATH``, ...).
        models: model names or ``ARCH@SOURCE`` refs; ``None``: the built-in zoo.
        mode: ``linear`` (logistic regression on frozen pre-logits) or ``finetune`` (all
            weights).
        loss: ``ce`` or ``powergrad`` (finetune only).
        alpha: PowerGrad α in (0, 1]; ignored for ``ce`` (reported as ``None``).
        seeds: training seeds; the ground truth is the mean test accuracy over them.
        scores: score names; ``None``: every non-expensive score; ``[]``: ground truth only.
        settings: :class:`TrainSettings` or a dict of its fields (split sizes, input size,
            epochs, optimiser...).
        rank_options: :class:`zoorank.rank.RankOptions` or a dict; defaults to
            ``RankOptions(input_size=settings.input_size, seed=settings.split_seed)`` on
            ``settings.device``.
            ``samples_per_class`` is unused: the scores see the train split.
        resamples: bootstrap resamples over models for every interval (0: no intervals).
        cache_dir: feature cache folder (shared with ``zoorank rank``), without a size bound.
        cache: the feature cache, used instead of ``cache_dir``
            (``FeatureCache.from_settings``: bounded by ``ZOORANK_CACHE_MAX_MB``).
        data_roots, upload_dir: as for ``zoorank.rank.rank``.
        expect: the dataset's identity when the job was submitted (a service's job): data
            that changed since is refused instead of validated.
        on_model: progress callback ``(stage, model, index, total)`` with stage ``score`` or
            ``train``.
        on_truth: called with each model's :class:`GroundTruth` as soon as it is trained (or
            failed).

    Returns:
        A :class:`ValidationResult`; ``.to_dict()`` is JSON-serialisable.

    Raises:
        InvalidInputError: bad mode, loss, α, seeds, settings, names or dataset (before any
            model runs). A model that fails to train or score is recorded, not raised.
    """
    start = time.perf_counter()
    seeds = check_request(mode, loss, alpha, seeds)
    if not isinstance(settings, TrainSettings):
        settings = TrainSettings.from_dict(settings)
    settings.validate()
    if rank_options is None:
        rank_options = RankOptions(
            input_size=settings.input_size, seed=settings.split_seed, device=settings.device
        )
    elif not isinstance(rank_options, RankOptions):
        rank_options = RankOptions.from_dict(rank_options)
    rank_options.validate()
    specs = resolve_models(models, data_roots=data_roots)
    score_names = [] if scores is not None and len(scores) == 0 else resolve_scores(scores)

    dataset = load_dataset(dataset_ref, data_roots=data_roots, upload_dir=upload_dir, expect=expect)
    check_class_counts(
        dataset.labels, min_per_class=rank_options.min_samples_per_class, class_names=dataset.class_names
    )
    split = settings.split(dataset.labels)
    if cache is None and cache_dir is not None:
        cache = FeatureCache(cache_dir)

    # Scores on the train split, through the ranking pipeline.
    results: list[ModelResult] = []
    if score_names:
        prepared = PreparedData(
            dataset=dataset,
            rows=split.train,
            tap_rows=class_balanced_rows(dataset.labels[split.train], rank_options.tap_images_per_class),
        )
        for i, spec in enumerate(specs):
            if on_model is not None:
                on_model("score", spec.name, i, len(specs))
            results.append(score_model(prepared, spec, score_names, rank_options, cache=cache))
    ranking, pool = summarise(results, score_names) if score_names else ({"aggregate": []}, {})
    values: dict[str, dict[str, float | None]] = {}
    errors: dict[str, dict[str, str]] = {}
    score_seconds = {name: 0.0 for name in score_names}
    for r in results:
        for name, done in r.scores.items():
            score_seconds[name] += done.seconds
        values[r.model] = {}
        for name in score_names:
            record = r.scores.get(name)
            value = None if record is None else record.value
            if value is not None and name in pool:
                value = pool[name].get(r.model, value)
            values[r.model][name] = value
            error = r.error or (record.error if record is not None else None)
            if error is not None:
                errors.setdefault(r.model, {})[name] = error

    # Ground truth.
    linear_rows = np.sort(np.concatenate([split.train, split.val, split.test]))
    prepared_all = PreparedData(dataset=dataset, rows=linear_rows, tap_rows=np.zeros(0, np.int64))
    linear_options = RankOptions(**{**rank_options.to_dict(), "input_size": settings.input_size})
    truth: list[GroundTruth] = []
    for i, spec in enumerate(specs):
        if on_model is not None:
            on_model("train", spec.name, i, len(specs))
        began = time.perf_counter()
        try:
            if mode == "linear":
                runs = _linear_runs(prepared_all, split, spec, linear_options, cache, seeds)
            else:
                runs = [
                    finetune_accuracy(
                        create_model(spec),
                        dataset,
                        split,
                        settings,
                        loss=loss,
                        alpha=alpha,
                        seed=seed,
                    )
                    for seed in seeds
                ]
        except Exception as exc:  # one model failing must not lose the others
            if not isinstance(exc, ZoorankError):
                log.exception("ground truth failed for %s", spec.name)
            truth.append(
                GroundTruth(
                    spec.name,
                    None,
                    None,
                    seconds=time.perf_counter() - began,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
        else:
            accs = np.asarray([r.accuracy for r in runs])
            truth.append(
                GroundTruth(
                    spec.name, float(accs.mean()), float(accs.std()), runs, time.perf_counter() - began
                )
            )
            log.info("%s: accuracy %.4f ± %.4f", spec.name, accs.mean(), accs.std())
        if on_truth is not None:
            on_truth(truth[-1])

    accuracy = {g.model: g.accuracy for g in truth if g.accuracy is not None}
    per_seed = {
        seed: {g.model: g.runs[k].accuracy for g in truth if g.accuracy is not None}
        for k, seed in enumerate(seeds)
    }
    comparison = compare_with_ground_truth(
        {name: {m: values.get(m, {}).get(name) for m in accuracy} for name in score_names},
        {name: get_score(name).direction for name in score_names},
        per_seed,
        twins=_twins(specs),
        resamples=resamples,
    )
    return ValidationResult(
        dataset=dataset_ref,
        dataset_fingerprint=dataset.fingerprint,
        mode=mode,
        loss=loss,
        alpha=float(alpha) if loss == "powergrad" else None,
        seeds=seeds,
        settings=settings.to_dict(),
        rank_options=rank_options.to_dict(),
        split={**split.sizes(), "seed": settings.split_seed},
        ground_truth=truth,
        scores=values,
        score_errors=errors,
        agreement=comparison["agreement"],
        best=comparison["best"],
        seed_agreement=comparison["seed_agreement"],
        above_random=comparison["above_random"],
        aggregate_ranking=list(ranking.get("aggregate", [])),
        score_seconds=score_seconds,
        seconds=time.perf_counter() - start,
        versions=_versions(),
    )
