"""LogME: log of the maximum marginal evidence of a Bayesian linear model on the features.

You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021 (and the fixed-point algorithm of the TPAMI extension).

For each class c, a one-vs-rest target ``y_c`` is regressed on the features with a Gaussian
prior ``w ~ N(0, α⁻¹I)`` and noise ``N(0, β⁻¹)``; α, β are chosen by evidence maximisation
with the fixed-point updates ``α = γ/mᵀm``, ``β = (n−γ)/||Fm − y||²``, ``γ = Σ βσᵢ/(α+βσᵢ)``.
The score is the mean over classes of the maximised log evidence divided by n:

    L(α, β) = d/2 log α + n/2 log β − ½ Σ log(α + βσᵢ) − β/2 ||Fm−y||² − α/2 mᵀm − n/2 log 2π

with σᵢ the squared singular values of F. One SVD serves every class.
"""

from __future__ import annotations

import numpy as np

from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

_EPS = 1e-5


def log_maximum_evidence(
    features_nd: np.ndarray, labels_n: np.ndarray, *, max_iter: int = 11, tol: float = 1e-3
) -> float:
    """LogME of features ``(n, d)`` for integer labels ``(n,)``; higher is better.

    Raises:
        InvalidInputError: non-finite features, shape mismatch, fewer than 2 classes.

    Example:
        >>> x = np.repeat(np.eye(3), 10, axis=0); y = np.repeat(np.arange(3), 10)
        >>> log_maximum_evidence(x, y) > log_maximum_evidence(x, np.roll(y, 5))
        True
    """
    labels_n = check_labels(labels_n)
    f = check_matrix(features_nd, labels_n.shape[0])
    n, d = f.shape
    # Thin SVD: u (n, r), s (r,), r = min(n, d); singular values beyond r are zero.
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    onehot = np.eye(int(labels_n.max()) + 1)[labels_n]  # (n, C)
    x = u.T @ onehot  # (r, C): the targets in the left singular basis
    x2 = x**2
    residual_outside = (onehot**2).sum(axis=0) - x2.sum(axis=0)  # (C,) part of y outside span(U)

    evidences = []
    for c in range(onehot.shape[1]):
        evidences.append(_class_evidence(sigma, x2[:, c], residual_outside[c], n, d, max_iter, tol))
    return float(np.mean(evidences))


def _class_evidence(
    sigma: np.ndarray, x2: np.ndarray, res_outside: float, n: int, d: int, max_iter: int, tol: float
) -> float:
    alpha, beta = 1.0, 1.0
    evidence = 0.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum()
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()
        res2 = (x2 / (1.0 + sigma / t) ** 2).sum() + res_outside
        alpha = gamma / (m2 + _EPS)
        beta = (n - gamma) / (res2 + _EPS)
        t_new = alpha / beta
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)
        ) / n
        if abs(t_new - t) / t <= tol:
            break
    return float(evidence)


def _compute(inputs: ScoreInputs) -> ScoreOutput:
    assert inputs.features is not None
    return ScoreOutput(value=log_maximum_evidence(inputs.features, inputs.labels))


register_score(
    ScoreSpec(
        name="logme",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="You et al. 2021, LogME: Practical Assessment of Pre-trained Models (ICML)",
        cost="cheap",
        description="Mean over classes of the maximised log evidence of a linear model, / n.",
    )
)
