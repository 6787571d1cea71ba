"""How well a score's ranking of models agrees with their ground-truth accuracy.

Every score is first *oriented* so that higher is better: a lower-is-better score has its sign
flipped. Then, over the models both know:

* weighted Kendall τ -- ``scipy.stats.weightedtau(score, accuracy)`` with its default
  arguments (hyperbolic weigher, additive, the average of the rankings by either variable):
  swaps among the top models weigh more (Vigna, "A weighted correlation index for rankings
  with ties", WWW 2015; used by the transferability literature since LogME, You et al. 2021);
* Kendall τ-b -- ``(concordant − discordant) / sqrt((n0 − n1)(n0 − n2))``;
* Pearson r of the oriented score and accuracy;
* top-1 regret -- ``max(accuracy) − accuracy(model the score ranks first)`` (the mean accuracy
  of the models tied for first), in the accuracy's own units.

Intervals are percentile bootstraps over *models* (resampling models with replacement), so
they say how much a τ depends on which models happen to be in the pool. Two scores are called
different only when the paired bootstrap interval of their τ difference excludes 0.

Undefined, not zero: when a score gives every model the same value (or the ground truth ties
on every model) no ranking exists to compare, and ``scipy.stats.weightedtau`` / ``kendalltau``
return NaN; the statistics are then ``None`` and :attr:`Agreement.undefined` says why. A
"best" score is named only when its τ is positive: a score that ranks the models backwards
(τ = −1) agreed with nothing. Over fewer than :data:`MIN_MODELS` models a rank correlation
takes a handful of values (3 models: Kendall τ is ±1 or ±1/3) and means little:
:func:`few_models_warning` says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from zoorank.errors import InvalidInputError

Statistic = Callable[[np.ndarray, np.ndarray], float]

STATISTICS = ("weighted_tau", "kendall_tau", "pearson_r")

MIN_MODELS = 4  # below this, a rank correlation over the pool means little


def few_models_warning(n_models: int) -> str | None:
    """A warning when ``n_models`` are too few for rank agreement to mean much, else ``None``.

    >>> "Kendall τ can only be -1, -0.33, +0.33, +1" in few_models_warning(3)
    True
    >>> few_models_warning(4) is None
    True
    """
    if n_models >= MIN_MODELS:
        return None
    advice = f"validate at least {MIN_MODELS} models, better 8 or more"
    if n_models < 2:
        return (
            f"{n_models} model{'' if n_models == 1 else 's'} with a ground truth: nothing to rank; {advice}"
        )
    pairs = n_models * (n_models - 1) // 2
    taus = ", ".join(f"{(pairs - 2 * k) / pairs:+.2g}" for k in range(pairs, -1, -1))
    return (
        f"only {n_models} models have a ground truth: rank agreement over so few models means "
        f"little (without ties Kendall τ can only be {taus}); {advice}"
    )


def orient(values: Sequence[float] | np.ndarray, direction: str) -> np.ndarray:
    """Score values with higher = better: negated when ``direction`` is ``lower``."""
    if direction not in ("higher", "lower"):
        raise InvalidInputError(
            f"direction must be 'higher' or 'lower', got {direction!r}", field="direction"
        )
    array = np.asarray(values, dtype=np.float64)
    return -array if direction == "lower" else array


def _check_pair(score: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if score.ndim != 1 or score.shape != accuracy.shape:
        raise InvalidInputError(
            f"score and accuracy must be 1-D of one length; got {score.shape} and {accuracy.shape}",
            field="scores",
        )
    if not (np.isfinite(score).all() and np.isfinite(accuracy).all()):
        raise InvalidInputError("score and accuracy must be finite", field="scores")
    return score, accuracy


def _degenerate(score: np.ndarray, accuracy: np.ndarray) -> bool:
    return undefined_reason(score, accuracy) is not None


def undefined_reason(score: np.ndarray, accuracy: np.ndarray) -> str | None:
    """Why no rank correlation of ``score`` with ``accuracy`` exists, or ``None`` when one does:
    fewer than 2 models, the score ties on every model, or the accuracy does."""
    if score.size < 2:
        return f"{score.size} model{'' if score.size == 1 else 's'}: nothing to rank"
    if np.ptp(score) == 0:
        return "tie: the score gives every model the same value"
    if np.ptp(accuracy) == 0:
        return "tie: every model has the same ground-truth accuracy"
    return None


def weighted_tau(score: np.ndarray, accuracy: np.ndarray) -> float:
    """``scipy.stats.weightedtau(score, accuracy)``, default arguments; NaN when either is
    constant or there are fewer than 2 models."""
    score, accuracy = _check_pair(score, accuracy)
    if _degenerate(score, accuracy):
        return math.nan
    return float(stats.weightedtau(score, accuracy).statistic)


def kendall_tau(score: np.ndarray, accuracy: np.ndarray) -> float:
    """Kendall τ-b; NaN when either is constant."""
    score, accuracy = _check_pair(score, accuracy)
    if _degenerate(score, accuracy):
        return math.nan
    return float(stats.kendalltau(score, accuracy).statistic)


def pearson_r(score: np.ndarray, accuracy: np.ndarray) -> float:
    """Pearson correlation; NaN when either is constant."""
    score, accuracy = _check_pair(score, accuracy)
    if _degenerate(score, accuracy):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(np.corrcoef(score, accuracy)[0, 1])


def top1_regret(score: np.ndarray, accuracy: np.ndarray) -> float:
    """``max(accuracy) − mean(accuracy[models tied for the highest score])``; 0 is perfect.

    >>> top1_regret(np.array([0.1, 0.9, 0.5]), np.array([0.8, 0.7, 0.9]))
    0.2
    """
    score, accuracy = _check_pair(score, accuracy)
    if score.size == 0:
        return math.nan
    first = score == score.max()
    return round(float(accuracy.max() - accuracy[first].mean()), 12)


_FUNCTIONS: dict[str, Statistic] = {
    "weighted_tau": weighted_tau,
    "kendall_tau": kendall_tau,
    "pearson_r": pearson_r,
}


def _resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_interval(
    statistic: Statistic,
    score: np.ndarray,
    accuracy: np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(score, accuracy)`` over models.

    Resamples where the statistic is undefined (e.g. every drawn model has the same score)
    are dropped; ``None`` when fewer than half of them are usable or ``resamples`` is 0.
    """
    score, accuracy = _check_pair(score, accuracy)
    if resamples <= 0 or score.size < 3:
        return None
    values = np.asarray([statistic(score[i], accuracy[i]) for i in _resamples(score.size, resamples, seed)])
    values = values[np.isfinite(values)]
    if values.size < resamples / 2:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_difference_interval(
    statistic: Statistic,
    score_a: np.ndarray,
    score_b: np.ndarray,
    accuracy: np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Bootstrap interval of ``statistic(a, acc) − statistic(b, acc)`` with the *same* resampled
    models for both (oriented scores over the same models). ``None`` as in
    :func:`bootstrap_interval`."""
    score_a, accuracy = _check_pair(score_a, accuracy)
    score_b, _ = _check_pair(score_b, accuracy)
    if resamples <= 0 or accuracy.size < 3:
        return None
    diffs = np.asarray(
        [
            statistic(score_a[i], accuracy[i]) - statistic(score_b[i], accuracy[i])
            for i in _resamples(accuracy.size, resamples, seed)
        ]
    )
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < resamples / 2:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return float(low), float(high)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass
class Agreement:
    """One score against ground truth over ``models`` (those with both a value and an accuracy).

    ``*_ci`` are bootstrap intervals over models (``None`` when undefined); statistics are
    ``None`` when undefined, and ``undefined`` then says why (a score or a ground truth that
    ties on every model, fewer than 2 models). ``top1_model`` is the model the score ranks
    first, ``None`` when several tie for first (they are in ``top1_tied``; the regret is then
    that of a random pick among them).
    """

    score: str
    direction: str
    models: list[str]
    weighted_tau: float | None
    kendall_tau: float | None
    pearson_r: float | None
    top1_regret: float | None
    top1_model: str | None
    weighted_tau_ci: tuple[float, float] | None = None
    kendall_tau_ci: tuple[float, float] | None = None
    pearson_r_ci: tuple[float, float] | None = None
    missing: list[str] | None = None
    undefined: str | None = None
    top1_tied: list[str] = field(default_factory=list)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["n_models"] = self.n_models
        return out


def _common(values: Mapping[str, float | None], accuracy: Mapping[str, float]) -> tuple[list[str], list[str]]:
    models = [
        m
        for m in accuracy
        if values.get(m) is not None and math.isfinite(float(values[m]))  # type: ignore[arg-type]
    ]
    return models, [m for m in accuracy if m not in models]


def score_agreement(
    values: Mapping[str, float | None],
    accuracy: Mapping[str, float],
    *,
    direction: str,
    score: str = "",
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Agreement:
    """Agreement of one score with ground truth.

    Args:
        values: model -> raw score value (``None`` when it failed: that model is left out).
        accuracy: model -> ground-truth accuracy (its keys define the pool).
        direction: the score's ``higher`` or ``lower``.
        resamples: bootstrap resamples over models for the intervals (0: none).
    """
    models, missing = _common(values, accuracy)
    s = orient([float(values[m]) for m in models], direction)  # type: ignore[arg-type]
    a = np.asarray([float(accuracy[m]) for m in models])
    first = None
    tied: list[str] = []
    regret = math.nan
    if models:
        tied = [m for m, value in zip(models, s, strict=True) if value == s.max()]
        first = tied[0] if len(tied) == 1 else None
        tied = tied if len(tied) > 1 else []
        regret = top1_regret(s, a)
    cis = {
        name: bootstrap_interval(fn, s, a, resamples=resamples, level=level, seed=seed)
        for name, fn in _FUNCTIONS.items()
    }
    return Agreement(
        score=score,
        direction=direction,
        models=models,
        weighted_tau=_finite_or_none(weighted_tau(s, a)),
        kendall_tau=_finite_or_none(kendall_tau(s, a)),
        pearson_r=_finite_or_none(pearson_r(s, a)),
        top1_regret=_finite_or_none(regret),
        top1_model=first,
        weighted_tau_ci=cis["weighted_tau"],
        kendall_tau_ci=cis["kendall_tau"],
        pearson_r_ci=cis["pearson_r"],
        missing=missing,
        undefined=undefined_reason(s, a),
        top1_tied=tied,
    )


def best_within_noise(
    values: Mapping[str, Mapping[str, float | None]],
    directions: Mapping[str, str],
    accuracy: Mapping[str, float],
    *,
    statistic: str = "weighted_tau",
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_coverage: float = 0.8,
) -> dict[str, object]:
    """The score with the highest ``statistic`` and every score not distinguishable from it.

    Args:
        values: score -> model -> value.
        min_coverage: only scores with a value on at least this share of the models compete
            (a static prior known for a few models must not win on those few).

    Returns ``{"statistic", "best", "value": best's statistic, "tied": [scores whose paired
    bootstrap interval of (best − score) contains 0, best included], "differences": {score:
    [low, high]}, "excluded": [scores below min_coverage], "undefined": [scores whose
    statistic does not exist, e.g. a tie on every model], "note"}``. Each comparison uses the
    models both scores have values for. ``best`` is ``None`` (and ``note`` says why) unless the
    highest statistic is positive: a score that ranks the models backwards agreed with nothing.
    """
    if statistic not in _FUNCTIONS:
        raise InvalidInputError(f"statistic must be one of {', '.join(STATISTICS)}")
    fn = _FUNCTIONS[statistic]
    point: dict[str, float] = {}
    excluded = []
    undefined = []
    for name, by_model in values.items():
        models, _ = _common(by_model, accuracy)
        if len(models) < min_coverage * len(accuracy):
            excluded.append(name)
            continue
        s = orient([float(by_model[m]) for m in models], directions[name])  # type: ignore[arg-type]
        value = fn(s, np.asarray([accuracy[m] for m in models], dtype=float)) if models else math.nan
        if math.isfinite(value):
            point[name] = value
        else:
            undefined.append(name)
    nobody: dict[str, object] = {
        "statistic": statistic,
        "best": None,
        "value": None,
        "tied": [],
        "differences": {},
        "excluded": excluded,
        "undefined": undefined,
    }
    if not point:
        return {**nobody, "note": f"no score has a defined {statistic}"}
    best = max(sorted(point), key=lambda name: point[name])
    if point[best] <= 0.0:
        return {
            **nobody,
            "value": point[best],
            "note": (
                f"no score agreed with the ground truth: the highest {statistic} is "
                f"{point[best]:+.2f} ({best})"
            ),
        }
    tied = [best]
    differences: dict[str, list[float] | None] = {}
    for name in sorted(point):
        if name == best:
            continue
        both = [m for m in accuracy if values[best].get(m) is not None and values[name].get(m) is not None]
        a = np.asarray([accuracy[m] for m in both], dtype=float)
        sb = orient([float(values[best][m]) for m in both], directions[best])  # type: ignore[arg-type]
        sn = orient([float(values[name][m]) for m in both], directions[name])  # type: ignore[arg-type]
        interval = paired_difference_interval(fn, sb, sn, a, resamples=resamples, level=level, seed=seed)
        differences[name] = list(interval) if interval is not None else None
        if interval is None or interval[0] <= 0.0:
            tied.append(name)
    return {
        "statistic": statistic,
        "best": best,
        "value": point[best],
        "tied": tied,
        "differences": differences,
        "excluded": excluded,
        "undefined": undefined,
        "note": None,
    }


def seed_agreement(
    accuracy_by_seed: Mapping[int, Mapping[str, float]], *, resamples: int = 1000, seed: int = 0
) -> dict[str, object]:
    """Kendall τ-b between the model orders of every pair of seeds (over common models), with
    a bootstrap interval over models.

    Returns ``{"pairs": [{"seeds": [a, b], "kendall_tau": τ, "kendall_tau_ci": [lo, hi]}],
    "mean_kendall_tau", "min_kendall_tau"}``: how reproducible the ground truth itself is.
    """
    seeds = sorted(accuracy_by_seed)
    pairs = []
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            common = [m for m in accuracy_by_seed[a] if m in accuracy_by_seed[b]]
            first = np.asarray([accuracy_by_seed[a][m] for m in common], dtype=float)
            second = np.asarray([accuracy_by_seed[b][m] for m in common], dtype=float)
            interval = bootstrap_interval(kendall_tau, first, second, resamples=resamples, seed=seed)
            pairs.append(
                {
                    "seeds": [a, b],
                    "kendall_tau": _finite_or_none(kendall_tau(first, second)),
                    "kendall_tau_ci": list(interval) if interval else None,
                }
            )
    taus = [p["kendall_tau"] for p in pairs if p["kendall_tau"] is not None]
    return {
        "pairs": pairs,
        "mean_kendall_tau": float(np.mean(taus)) if taus else None,
        "min_kendall_tau": float(np.min(taus)) if taus else None,
    }


def count_above_twin(
    values: Mapping[str, float | None], direction: str, twins: Mapping[str, str]
) -> dict[str, int]:
    """How many pretrained models a score puts strictly above their random-init twin.

    Args:
        values: model -> score value.
        twins: pretrained model -> its random-init twin.

    Returns ``{"above": k, "pairs": n}`` over the pairs where both values exist.
    """
    above = pairs = 0
    for pretrained, random_twin in twins.items():
        a, b = values.get(pretrained), values.get(random_twin)
        if a is None or b is None:
            continue
        pairs += 1
        oriented = orient([float(a), float(b)], direction)
        above += int(oriented[0] > oriented[1])
    return {"above": above, "pairs": pairs}
