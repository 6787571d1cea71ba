"""SFDA: self-challenging Fisher discriminant analysis.

Shao, Zhao, Ge, Xiao, Chen, Chen, Luo. "Not All Models Are Equal: Predicting Model
Transferability in a Self-challenging Fisher Space", ECCV 2022; as the authors' code
(TencentARC/SFDA ``metrics.py``, ``SFDA_Score``).

1. Regularised Fisher space. The within-class scatter ``S_w = (1/n) Σᵢ (xᵢ − μ_{yᵢ})(xᵢ − μ_{yᵢ})ᵀ``
   is shrunk, ``S_λ = (1 − λ) S_w + λ tr(S_w)/d I``, with the adaptive strength
   ``λ = max(exp(−5 a), 1e-10)``, ``a`` the authors' three-step power-iteration estimate of
   the largest eigenvalue of ``S_w``. The Bayes classifier of that Fisher space is
   ``p(c | x) = softmax_c(xᵀ S_λ⁻¹ μ_c − ½ μ_cᵀ S_λ⁻¹ μ_c + log π_c)`` (the authors compute
   ``S_λ⁻¹`` as ``V Vᵀ`` of the generalised eigenvectors of ``(S_b, S_λ)``; it is the same matrix).
2. Self-challenge (ConfMix). ``q = softmax(p)`` softens the probabilities; each sample moves
   towards the mean ``μ̄_{-y}`` of the other classes' means by its own uncertainty,
   ``x̃ᵢ = qᵢ,yᵢ xᵢ + (1 − qᵢ,yᵢ) μ̄_{-yᵢ}``.
3. Score. Refit the Fisher classifier (same ``λ``) on ``x̃`` and take ``(1/n) Σ p(yᵢ | x̃ᵢ)``.

The paper writes the last step as a log-likelihood; the authors' code leaves the log out
("in case of instability") and its published results use the mean probability, which is
the value here. The mean log-likelihood is stored in ``details`` as ``mean_log_likelihood``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import class_means, softmax
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score


def power_iteration_eigenvalue(matrix_dd: np.ndarray, *, steps: int = 3) -> float:
    """The authors' estimate of the largest eigenvalue of a symmetric PSD matrix.

    Starting from the row sums ``x = A 1``, ``steps`` times ``y = Ax/||Ax||``,
    ``x = Ay/||Ay||``; returns ``xᵀAy``. Falls back to the exact largest eigenvalue when the
    start vector is zero (rows of ``A`` summing to 0).
    """
    x = matrix_dd.sum(axis=1)
    y = x
    for _ in range(steps):
        product = matrix_dd @ x
        norm = np.linalg.norm(product)
        if norm == 0.0:
            return float(np.linalg.eigvalsh(matrix_dd)[-1])
        y = product / norm
        product = matrix_dd @ y
        x = product / np.linalg.norm(product)
    return float(x @ matrix_dd @ y)


@dataclass(frozen=True)
class _FisherFit:
    probabilities: np.ndarray  # (n, C)
    shrinkage: float


def _fisher_classifier(x_nd: np.ndarray, labels_n: np.ndarray, shrinkage: float | None) -> _FisherFit:
    n, d = x_nd.shape
    means, counts = class_means(x_nd, labels_n)
    residual = x_nd - means[labels_n]
    within = residual.T @ residual / n  # Σ_c π_c cov_c, each with 1/n_c
    if shrinkage is None:
        shrinkage = max(float(np.exp(-5.0 * power_iteration_eigenvalue(within))), 1e-10)
    scale = np.trace(within) / d
    if scale <= 0.0:
        raise InvalidInputError(
            "every class is a single repeated point (no within-class variance); SFDA needs "
            "within-class spread",
            field="features",
        )
    shrunk = (1.0 - shrinkage) * within
    shrunk[np.diag_indices_from(shrunk)] += shrinkage * scale
    factor = scipy.linalg.cho_factor(shrunk, lower=True, check_finite=False)
    coef = scipy.linalg.cho_solve(factor, means.T, check_finite=False).T  # (C, d) = μ S⁻¹
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(counts / n)
    return _FisherFit(probabilities=softmax(x_nd @ coef.T + intercept), shrinkage=shrinkage)


def self_challenging_fisher_discriminant(
    features_nd: np.ndarray, labels_n: np.ndarray
) -> tuple[float, dict[str, float]]:
    """SFDA of features ``(n, d)`` for labels ``(n,)``: the score and a few diagnostics.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.

    Returns:
        ``(score, details)``: the mean probability of the true class after the
        self-challenge, and ``{"shrinkage", "mean_log_likelihood", "first_pass_score"}``.

    Raises:
        InvalidInputError: non-finite features, shape mismatch, < 2 classes, no within-class
            variance.

    Example:
        >>> x = np.array([[0.0], [0.1], [5.0], [5.1]]); y = np.array([0, 0, 1, 1])
        >>> score, _ = self_challenging_fisher_discriminant(x, y)
        >>> score > 0.99
        True
    """
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    rows = np.arange(labels.shape[0])
    first = _fisher_classifier(x, labels, None)
    softened = softmax(first.probabilities)
    means, _ = class_means(x, labels)
    others = (means.sum(axis=0) - means) / (means.shape[0] - 1)  # μ̄_{-c}, (C, d)
    confidence = softened[rows, labels][:, None]
    mixed = confidence * x + (1.0 - confidence) * others[labels]
    second = _fisher_classifier(mixed, labels, first.shrinkage)
    true_class = second.probabilities[rows, labels]
    details = {
        "shrinkage": first.shrinkage,
        "mean_log_likelihood": float(np.mean(np.log(np.maximum(true_class, 1e-300)))),
        "first_pass_score": float(np.mean(first.probabilities[rows, labels])),
    }
    return float(np.mean(true_class)), details


def _compute(inputs: ScoreInputs) -> ScoreOutput:
    assert inputs.features is not None
    value, details = self_challenging_fisher_discriminant(inputs.features, inputs.labels)
    return ScoreOutput(value=value, details=details)


register_score(
    ScoreSpec(
        name="sfda",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Shao et al. 2022, Not All Models Are Equal: Predicting Model Transferability in "
        "a Self-challenging Fisher Space (ECCV)",
        cost="cheap",
        description="Regularised Fisher classifier after a self-challenging mix; mean p(y|x).",
    )
)
