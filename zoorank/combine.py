"""Ways to turn several scores of one pool of models into one ranking, and the rules every
combination keeps.

Every score is first oriented (higher = better, :func:`zoorank.groundtruth.agreement.orient`).
Within one pool (one job's models on one dataset):

* ``mean_rank`` -- the average over scores of each model's rank (1 = best; ties share the mean
  rank), as a value ``-mean_rank`` so that higher is better;
* ``weighted_z`` -- ``Σ_s w_s z_s(m)`` with ``z_s`` the oriented score standardised over the
  pool (mean 0, standard deviation 1) and every ``w_s >= 0``. One score ranks exactly as the
  score itself; equal weights are the mean z-score; fitted (non-negative) weights a stacker.

Invariants, kept by :func:`rank_pool` for every method and tested with random score matrices
(``tests/unit/test_combine_properties.py``):

* **unanimity** -- if every informative score puts A at or above B and one puts it strictly
  above, A ranks above B (non-negative weights; combined values tied in floating point are
  broken by the mean rank, which is exact);
* one score ranks as itself; a positive rescaling of a score, or a constant added to it, changes
  nothing; the order in which models are listed changes nothing (ties share a rank, never
  broken by name);
* **no information, no say** -- a score whose values over the pool are equal within
  :data:`CONSTANT_RTOL` (float noise, saturation) is left out, and the ranking says so; when
  every score is left out the ranking is a tie.

A model missing a score (the score failed on it, or the prior is unknown) is placed below every
model that has it: one model's failure is not a missing score for the pool. A score missing for
every model is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from zoorank.errors import InvalidInputError

METHODS = ("mean_rank", "weighted_z")

Values = Mapping[str, Mapping[str, float | None]]  # model -> score -> value

# Two values of one score closer than this, relative to the largest magnitude the score takes
# in the pool, are equal. Why 1e-6: float64 rounding of a score's arithmetic is ~1e-16
# relative per operation and ~1e-12 after sums over 10^4 terms; scores computed from float32
# features carry ~1e-7. A score's own sampling noise is far above it: over the held-out
# benchmark's half-sample resamples (benchmarks/results/heldout/calib.jsonl.gz, 100 per unit), the
# median relative standard deviation is 7e-4 for leep, 5e-3 for transrate, 1e-2 for nce, 8e-2
# for knn. What falls below 1e-6 is fixed by construction (hscore: 5e-16, a constant; the
# ImageNet prior; NCE of a model that is always sure) or a near-uniform predictor's LEEP
# (6e-7, log 1/K up to noise). In `make demo`, hscore spans 8.999999999999996..
# 9.000000000000004 (9e-16 relative): one value.
CONSTANT_RTOL = 1e-6
# ... and never below this absolute spread: a score near 0 that comes out of a cancellation
# (0 ± 1e-15) is as flat as one at 9 ± 1e-15. No registered score separates models by less.
CONSTANT_ATOL = 1e-12


def oriented_matrix(
    values: Values, directions: Mapping[str, str], scores: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """``(models, M)`` with ``M[i, j]`` the oriented value of ``scores[j]`` for ``models[i]``;
    missing values (and a score nobody has) are NaN. Models are sorted by name."""
    models = sorted(values)
    matrix = np.full((len(models), len(scores)), np.nan)
    for i, model in enumerate(models):
        for j, score in enumerate(scores):
            value = values[model].get(score)
            if value is not None and np.isfinite(value):
                matrix[i, j] = value if directions[score] == "higher" else -value
    return models, matrix


def tolerance(column_n: np.ndarray) -> float:
    """The spread below which values of one score are equal: :data:`CONSTANT_RTOL` of the
    largest magnitude among the known values, at least :data:`CONSTANT_ATOL`."""
    known = column_n[np.isfinite(column_n)]
    return max(float(CONSTANT_RTOL * np.max(np.abs(known))), CONSTANT_ATOL) if known.size else CONSTANT_ATOL


def snap_ties(column_n: np.ndarray) -> np.ndarray:
    """The column with values closer than :func:`tolerance` to the next lower one made equal
    to it (so float noise is a tie, not an order); NaN stays NaN."""
    out = column_n.astype(np.float64, copy=True)
    known = np.flatnonzero(np.isfinite(out))
    if known.size < 2:
        return out
    tol = tolerance(out)
    order = known[np.argsort(out[known], kind="stable")]
    for previous, current in itertools.pairwise(order):
        if out[current] - out[previous] <= tol:
            out[current] = out[previous]
    return out


def is_constant(column_n: np.ndarray) -> bool:
    """True when the known values of one score are equal within :func:`tolerance` (or fewer
    than two models have it): it cannot order the pool."""
    known = column_n[np.isfinite(column_n)]
    return known.size == 0 or float(known.max() - known.min()) <= tolerance(column_n)


def why_uninformative(score: str, column_n: np.ndarray, direction: str = "higher") -> str:
    """A sentence for users: why ``score`` (``column_n`` its oriented values) was left out of
    the combination."""
    known = column_n[np.isfinite(column_n)] * (1.0 if direction == "higher" else -1.0)
    if known.size == 0:
        return f"{score}: failed on every model, left out"
    if known.size == 1:
        return f"{score}: computed for one model only, left out"
    spread = float(known.max() - known.min())
    mid = float(np.median(known))
    if spread == 0:
        return f"{score}: equal for every model ({mid:.6g}; saturated), left out"
    return f"{score}: equal for every model within float noise ({mid:.6g} ± {spread / 2:.1g}), left out"


def _fill_worst(column: np.ndarray, worst: float) -> np.ndarray:
    return np.where(np.isnan(column), worst, column)


def standardise(column_n: np.ndarray) -> np.ndarray:
    """z-scores of one oriented score over a pool; a constant column (within
    :data:`CONSTANT_RTOL`) is 0 for every model that has it; a missing value is 1 below the
    pool's lowest z (ranked under every model that has the score); an all-missing column is
    zeros."""
    column_n = snap_ties(column_n)
    known = column_n[~np.isnan(column_n)]
    if known.size == 0:
        return np.zeros_like(column_n)
    spread = known.std()
    if is_constant(column_n) or spread == 0:
        z = np.where(np.isnan(column_n), np.nan, 0.0)
    else:
        z = (column_n - known.mean()) / spread
    return _fill_worst(z, float(np.nanmin(z)) - 1.0)


def score_ranks(matrix: np.ndarray) -> np.ndarray:
    """Per column, each model's rank (1 = highest oriented value, ties share the mean rank,
    values within :data:`CONSTANT_RTOL` are ties, missing -> below every known value)."""
    if matrix.shape[1] == 0:
        return np.zeros((matrix.shape[0], 0))
    columns = []
    for col in matrix.T:
        col = snap_ties(col)
        worst = float(np.nanmin(col)) - 1.0 if np.isfinite(col).any() else 0.0
        columns.append(rankdata(-_fill_worst(col, worst)))
    return np.column_stack(columns)


def mean_rank(matrix: np.ndarray) -> np.ndarray:
    """``-mean rank`` over columns (see :func:`score_ranks`)."""
    return contributions(matrix, "mean_rank", None).sum(axis=1)


def check_weights(weights: Sequence[float], n_scores: int) -> np.ndarray:
    """``weights`` as an array, refused unless there is one per score, each finite and >= 0
    (a negative weight would subtract a score that points the right way on its own)."""
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (n_scores,):
        raise InvalidInputError(f"{array.size} weights for {n_scores} scores", field="weights")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise InvalidInputError(
            f"weights must be finite and >= 0 on oriented scores, got {list(map(float, array))}",
            field="weights",
        )
    return array


def weighted_z(matrix: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``Σ_j w_j z_j`` over the columns of ``matrix`` (see :func:`standardise`); weights >= 0."""
    return contributions(matrix, "weighted_z", weights).sum(axis=1)


def combine(
    values: Values,
    directions: Mapping[str, str],
    *,
    method: str,
    scores: Sequence[str],
    weights: Sequence[float] | None = None,
) -> dict[str, float]:
    """model -> combined value (higher = better) of ``scores`` by ``method``.

    >>> v = {"a": {"s": 1.0, "t": 0.0}, "b": {"s": 0.0, "t": 1.0}, "c": {"s": 0.5, "t": None}}
    >>> combine(v, {"s": "higher", "t": "lower"}, method="mean_rank", scores=["s", "t"])
    {'a': -1.0, 'b': -2.5, 'c': -2.5}
    """
    models, matrix = oriented_matrix(values, directions, scores)
    return dict(zip(models, _combined(matrix, method, weights), strict=True))


def contributions(matrix: np.ndarray, method: str, weights: Sequence[float] | None) -> np.ndarray:
    """``(n, k)``: what each score adds to each model's combined value, which is the row sum
    (``mean_rank``: ``-rank / k``; ``weighted_z``: ``w_j z_j``). One function, so that a
    ranking and its resampled draws (:mod:`zoorank.uncertainty`) add up the same numbers."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}", field="method")
    n, k = matrix.shape
    if k == 0:
        return np.zeros((n, 0))
    if method == "mean_rank":
        return -score_ranks(matrix) / k
    w = check_weights(weights if weights is not None else [1.0] * k, k)
    return np.column_stack([standardise(col) for col in matrix.T]) * w


def _combined(matrix: np.ndarray, method: str, weights: Sequence[float] | None) -> list[float]:
    return [float(c) for c in contributions(matrix, method, weights).sum(axis=1)]


@dataclass
class PoolRanking:
    """One pool ranked by one combination.

    ``rows``: best first, ``{"model", "value", "rank"}``; models with equal combined value and
    equal mean rank share a rank (competition ranking: 1, 1, 3); a model on which every score
    failed comes last with ``"failed"``. ``used``: the scores that ordered the pool;
    ``left_out``: score -> the sentence saying why it was not used; ``tie``: no score could
    order the pool, every (usable) model is ranked 1.
    """

    rows: list[dict[str, float | int | str]]
    used: list[str]
    left_out: dict[str, str] = field(default_factory=dict)
    tie: bool = False


def informative(
    matrix: np.ndarray, directions: Mapping[str, str], scores: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """The ``scores`` (the columns of the oriented ``matrix``) that can order the pool, and for
    each other one why not."""
    used, left_out = [], {}
    for j, score in enumerate(scores):
        if is_constant(matrix[:, j]):
            left_out[score] = why_uninformative(score, matrix[:, j], directions[score])
        else:
            used.append(score)
    return used, left_out


def rank_pool(
    values: Values,
    directions: Mapping[str, str],
    *,
    method: str,
    scores: Sequence[str],
    weights: Sequence[float] | None = None,
) -> PoolRanking:
    """``values`` ranked by ``method`` over the informative ones of ``scores`` (see the
    module's invariants). ``weights`` (``weighted_z``) go with ``scores``; a left-out score's
    weight is dropped with it. A model with no value for any of ``scores`` (every one failed on
    it) takes no part and is ranked last, marked ``"failed"``."""
    if weights is not None:
        check_weights(weights, len(scores))
    every_model, every = oriented_matrix(values, directions, scores)
    usable_rows = [i for i in range(len(every_model)) if not scores or np.isfinite(every[i]).any()]
    failed = [m for i, m in enumerate(every_model) if i not in usable_rows]
    models = [every_model[i] for i in usable_rows]
    used, left_out = informative(every[usable_rows], directions, scores)
    keep = [list(scores).index(s) for s in used]
    used_weights = None if weights is None else [weights[i] for i in keep]
    matrix = every[usable_rows][:, keep]
    rows: list[dict[str, float | int | str]] = []
    if not used:
        rows = [{"model": m, "value": 0.0, "rank": 1} for m in models]
    else:
        # combined values equal but for float noise (z-scores of a rescaled score) are a tie
        combined = [float(v) for v in snap_ties(np.asarray(_combined(matrix, method, used_weights)))]
        tiebreak = [float(v) for v in snap_ties(mean_rank(matrix))]
        key = {m: (combined[i], tiebreak[i]) for i, m in enumerate(models)}
        ordered = sorted(models, key=lambda m: (-key[m][0], -key[m][1], m))
        for position, model in enumerate(ordered, start=1):
            shared = rows and key[model] == key[str(rows[-1]["model"])]
            rows.append(
                {"model": model, "value": key[model][0], "rank": rows[-1]["rank"] if shared else position}
            )
    rows += [
        {"model": m, "value": float("nan"), "rank": len(models) + 1, "failed": "every score failed"}
        for m in failed
    ]
    return PoolRanking(rows, used, left_out, tie=not used and len(models) > 1)
