"""Ways to turn several scores of one pool of models into one ranking.

Every score is first oriented (higher = better, :func:`zoorank.validate.agreement.orient`).
Within one pool (one job's models on one dataset):

* ``mean_rank`` -- the average over scores of each model's rank (1 = best; ties share the mean
  rank), as a value ``-mean_rank`` so that higher is better;
* ``weighted_z`` -- ``Σ_s w_s z_s(m)`` with ``z_s`` the oriented score standardised over the
  pool (mean 0, standard deviation 1; a constant score contributes 0). One score with weight 1
  ranks exactly as the score itself; equal weights are the mean z-score; fitted weights are a
  stacker.

A model missing a score (the score failed on it, or the prior is unknown) is placed below every
model that has it, so it is never dropped from the ranking and never favoured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from zoorank.errors import InvalidInputError

METHODS = ("mean_rank", "weighted_z")

Values = Mapping[str, Mapping[str, float | None]]  # model -> score -> value


def oriented_matrix(
    values: Values, directions: Mapping[str, str], scores: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """``(models, M)`` with ``M[i, j]`` the oriented value of ``scores[j]`` for ``models[i]``;
    missing values (and a score nobody has) are NaN."""
    models = sorted(values)
    matrix = np.full((len(models), len(scores)), np.nan)
    for i, model in enumerate(models):
        for j, score in enumerate(scores):
            value = values[model].get(score)
            if value is not None and np.isfinite(value):
                matrix[i, j] = value if directions[score] == "higher" else -value
    return models, matrix


def _fill_worst(column: np.ndarray, worst: float) -> np.ndarray:
    return np.where(np.isnan(column), worst, column)


def standardise(column_n: np.ndarray) -> np.ndarray:
    """z-scores of one oriented score over a pool; a constant column is 0 for every model that
    has it; a missing value is 1 below the pool's lowest z (ranked under every model that has
    the score); an all-missing column is zeros."""
    known = column_n[~np.isnan(column_n)]
    if known.size == 0:
        return np.zeros_like(column_n)
    spread = known.std()
    z = (column_n - known.mean()) / spread if spread > 0 else np.where(np.isnan(column_n), np.nan, 0.0)
    return _fill_worst(z, float(np.nanmin(z)) - 1.0)


def mean_rank(matrix: np.ndarray) -> np.ndarray:
    """``-mean rank`` over columns (rank 1 = highest oriented value; missing -> last)."""
    if matrix.shape[1] == 0:
        return np.zeros(matrix.shape[0])
    ranks = [
        rankdata(-_fill_worst(col, float(np.nanmin(col)) - 1.0 if np.isfinite(col).any() else 0.0))
        for col in matrix.T
    ]
    return -np.mean(ranks, axis=0)


def weighted_z(matrix: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``Σ_j w_j z_j`` over the columns of ``matrix`` (see :func:`standardise`)."""
    if len(weights) != matrix.shape[1]:
        raise InvalidInputError(f"{len(weights)} weights for {matrix.shape[1]} scores", field="weights")
    if matrix.shape[1] == 0:
        return np.zeros(matrix.shape[0])
    z = np.column_stack([standardise(col) for col in matrix.T])
    return z @ np.asarray(weights, dtype=np.float64)


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
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}", field="method")
    models, matrix = oriented_matrix(values, directions, scores)
    if method == "mean_rank":
        combined = mean_rank(matrix)
    else:
        combined = weighted_z(matrix, weights if weights is not None else [1.0] * len(scores))
    return {m: float(c) for m, c in zip(models, combined, strict=True)}
