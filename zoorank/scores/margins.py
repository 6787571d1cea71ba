"""Hidden margin: normalised distance of held-out pre-logits to a linear probe's boundaries.

Jiang, Krishnan, Mobahi, Bengio. "Predicting the Generalization Gap in Deep Networks with
Margin Distributions", ICLR 2019 (arXiv 1810.00113), eq. (1)-(3). For a classifier ``f`` and
a representation ``x`` of class ``y`` the first-order distance to the boundary between ``y``
and a class ``j`` is

    d_j(x) = (f_y(x) - f_j(x)) / ||∇_x f_y(x) - ∇_x f_j(x)||₂ ,

exact when ``f`` is linear in ``x``, as the probe here is (``∇ f_y - ∇ f_j = w_y - w_j``).
Jiang et al. make margins comparable across networks by dividing by the *total variation* of
the layer, ``ν(x) = sqrt(tr Cov(x)) = sqrt(Σ_k Var(x_k))`` -- the square root of the summed
per-feature variances, computed over the samples -- which cancels a global rescaling of ``x``.
Here the representation is the pre-logit vector, the classifier a multinomial logistic
regression fitted on a stratified train split, and the margins are those of the held-out rows
(negative for misclassified rows). ``j`` is the runner-up class, ``argmax_{k≠y} f_k``; with
``pair="nearest"`` it is the class whose boundary is nearest, ``argmin_{k≠y} d_k``, which for a
correctly classified point of a linear classifier is the exact distance to its class region's
edge.

"Margin nuances" (the same research line: small margins next to the local geometry of the
data) are kept beside the value: for up to ``nuance_samples`` held-out rows, the normalised
margin next to the normalised Euclidean distance to the nearest row of another class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from scipy.stats import spearmanr

from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import (
    LinearProbe,
    content_keys,
    content_order_split,
    content_order_subset,
    fit_linear_probe,
)
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

Pair = Literal["runner_up", "nearest"]


def probe_margins(
    probe: LinearProbe, features_nd: np.ndarray, labels_n: np.ndarray, *, pair: Pair = "runner_up"
) -> np.ndarray:
    """Signed distances ``(n,)`` of features to the probe's boundary between ``y`` and ``j``.

    Formula: ``(f_y - f_j) / ||w_y - w_j||`` with ``f = x Wᵀ + b``; ``j`` as in the module
    docstring. Positive when the probe classifies the row correctly, negative when not.

    Raises:
        InvalidInputError: an unknown ``pair``.

    Example:
        >>> probe = LinearProbe(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([0.0, -2.0]))
        >>> probe_margins(probe, np.array([[3.0, 5.0], [0.0, 1.0]]), np.array([1, 0]))
        array([2., 1.])
    """
    if pair not in ("runner_up", "nearest"):
        raise InvalidInputError(f"pair must be 'runner_up' or 'nearest', got {pair!r}", field="params")
    scores = probe.scores(features_nd)  # (n, C)
    rows = np.arange(labels_n.shape[0])
    own = scores[rows, labels_n]
    # ||w_y - w_k|| for every (y, k): (C, C); the diagonal is never used.
    normals = np.linalg.norm(probe.weights[:, None, :] - probe.weights[None, :, :], axis=2)
    gaps = own[:, None] - scores  # (n, C)
    if pair == "runner_up":
        others = scores.copy()
        others[rows, labels_n] = -np.inf
        j = others.argmax(axis=1)
        return gaps[rows, j] / np.maximum(normals[labels_n, j], np.finfo(float).tiny)
    distances = gaps / np.maximum(normals[labels_n], np.finfo(float).tiny)
    distances[rows, labels_n] = np.inf
    return distances.min(axis=1)


def total_feature_scale(features_nd: np.ndarray) -> float:
    """``sqrt(Σ_k Var(x_k))`` over the rows of ``(n, d)`` (population variance), Jiang et al.

    Example:
        >>> total_feature_scale(np.array([[1.0, 0.0], [-1.0, 0.0]]))
        1.0
    """
    return float(np.sqrt(features_nd.var(axis=0).sum()))


def nearest_other_class_distance(
    query_qd: np.ndarray, query_labels_q: np.ndarray, pool_nd: np.ndarray, pool_labels_n: np.ndarray
) -> np.ndarray:
    """Euclidean distance ``(q,)`` from each query row to the nearest pool row of another class.

    Example:
        >>> pool = np.array([[0.0], [1.0], [5.0]]); labels = np.array([0, 0, 1])
        >>> nearest_other_class_distance(pool, labels, pool, labels)
        array([5., 4., 4.])
    """
    out = np.empty(query_qd.shape[0])
    pool_sq = (pool_nd**2).sum(axis=1)
    for start in range(0, query_qd.shape[0], 256):
        q = query_qd[start : start + 256]
        sq = (q**2).sum(axis=1)[:, None] + pool_sq[None, :] - 2.0 * q @ pool_nd.T
        same = query_labels_q[start : start + 256, None] == pool_labels_n[None, :]
        sq[same] = np.inf
        out[start : start + 256] = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    return out


@dataclass(frozen=True)
class HiddenMargins:
    """Result of :func:`hidden_margins`; distances are already divided by ``scale``."""

    margins: np.ndarray  # (h,) normalised signed margins of the held-out rows
    held_out: np.ndarray  # (h,) their row indices
    scale: float  # sqrt(Σ Var(x)) over all n rows
    train_accuracy: float
    probe: LinearProbe


def hidden_margins(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    holdout: float = 0.3,
    c: float = 1.0,
    pair: Pair = "runner_up",
    seed: int = 0,
) -> HiddenMargins:
    """Normalised hidden margins of the held-out rows (Jiang et al. 2019, eq. (1)-(3)).

    Formula: ``d(x) = (f_y(x) - f_j(x)) / ||w_y - w_j|| / sqrt(Σ_k Var(x_k))`` with ``f`` a
    logistic-regression probe fitted on a stratified train split (``1 - holdout`` of each
    class), evaluated on the held-out rows; the variance runs over all ``n`` rows.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels (any values; at least 2 classes, 2 rows each).
        holdout: share of each class held out.
        c: inverse L2 strength of the probe.
        pair: ``"runner_up"`` or ``"nearest"`` (see the module docstring).
        seed: seed of the split (the split follows row content, not row order).

    Raises:
        InvalidInputError: non-finite features, shape mismatch, < 2 classes, a class with one
            row, constant features (zero total variance).

    Example:
        >>> rng = np.random.default_rng(0); y = np.repeat([0, 1], 50)
        >>> x = np.c_[np.where(y == 1, 3.0, -3.0), np.zeros(100)] + 0.01 * rng.normal(size=(100, 2))
        >>> round(float(np.median(hidden_margins(x, y).margins)), 2)  # ≈ 3 / sqrt(Var) = 3 / 3
        1.0
    """
    labels_n = check_labels(labels_n, min_per_class=2)
    x = check_matrix(features_nd, labels_n.shape[0])
    scale = total_feature_scale(x)
    if not scale > 0:
        raise InvalidInputError(
            "features are constant across samples (zero total variance); no margin is defined",
            field="features",
        )
    train, test = content_order_split(content_keys(x, seed=seed), labels_n, holdout=holdout)
    probe = fit_linear_probe(x[train], labels_n[train], c=c)
    train_accuracy = float((probe.scores(x[train]).argmax(axis=1) == labels_n[train]).mean())
    margins = probe_margins(probe, x[test], labels_n[test], pair=pair) / scale
    return HiddenMargins(
        margins=margins, held_out=test, scale=scale, train_accuracy=train_accuracy, probe=probe
    )


def _compute(inputs: ScoreInputs, *, holdout: float, c: float, pair: str, nuance_samples: int) -> ScoreOutput:
    assert inputs.features is not None
    result = hidden_margins(
        inputs.features,
        inputs.labels,
        holdout=holdout,
        c=c,
        pair=cast(Pair, pair),
        seed=inputs.seed,
    )
    x = check_matrix(inputs.features, inputs.labels.shape[0])
    labels = check_labels(inputs.labels)
    q1, median, q3 = np.percentile(result.margins, [25, 50, 75])
    details: dict[str, Any] = {
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "negative_fraction": float((result.margins < 0).mean()),
        "held_out": int(result.margins.size),
        "feature_scale": result.scale,
        "train_accuracy": result.train_accuracy,
        "normalisation": "sqrt(sum of per-feature variances), Jiang et al. 2019",
    }
    details["nuances"] = _nuances(x, labels, result, nuance_samples, inputs.seed)
    return ScoreOutput(value=float(median), details=details)


def _nuances(x: np.ndarray, labels: np.ndarray, result: HiddenMargins, cap: int, seed: int) -> dict[str, Any]:
    """Per-sample margin next to the distance to the nearest other-class row (both / scale)."""
    held = result.held_out
    pick = content_order_subset(content_keys(x[held], seed=seed), labels[held], size=cap)
    rows = held[pick]
    distance = nearest_other_class_distance(x[rows], labels[rows], x, labels) / result.scale
    margin = result.margins[pick]
    rho = spearmanr(margin, distance).statistic if rows.size > 2 else float("nan")
    return {
        "sample": rows.tolist(),
        "label": labels[rows].tolist(),
        "margin": np.round(margin, 6).tolist(),
        "nearest_other_class_distance": np.round(distance, 6).tolist(),
        "spearman": None if not np.isfinite(rho) else float(rho),
    }


register_score(
    ScoreSpec(
        name="hidden_margin",
        family="margin",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper=(
            "Jiang, Krishnan, Mobahi, Bengio 2019, Predicting the Generalization Gap in Deep "
            "Networks with Margin Distributions (ICLR)"
        ),
        cost="moderate",
        params={"holdout": 0.3, "c": 1.0, "pair": "runner_up", "nuance_samples": 500},
        description=(
            "Median over held-out samples of the distance of the pre-logits to a linear probe's "
            "boundary with the runner-up class, / sqrt(total feature variance)."
        ),
    )
)
