"""LEEP: log expected empirical prediction of the source classifier's soft labels.

Nguyen, Hassner, Seeger, Archambeau. "LEEP: A New Measure to Evaluate Transferability of
Learned Representations", ICML 2020, eq. (1)-(2).

With ``θ(x)`` the source model's softmax over its ``k`` classes ``z``:

    P̂(y, z) = (1/n) Σ_{i: yᵢ = y} θ(xᵢ)_z          (empirical joint)
    P̂(y | z) = P̂(y, z) / Σ_y' P̂(y', z)
    LEEP    = (1/n) Σᵢ log Σ_z P̂(yᵢ | z) θ(xᵢ)_z

It is ≤ 0; 0 means the source classes predict the target classes perfectly. Source classes
with ``P̂(z) = 0`` (softmax underflowed to 0 for every sample) carry no information and are
dropped; the authors' code would return NaN there.
"""

from __future__ import annotations

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import one_hot, softmax
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score


def log_expected_empirical_prediction(probabilities_nk: np.ndarray, labels_n: np.ndarray) -> float:
    """LEEP of source-class probabilities ``θ (n, k)`` for target labels ``(n,)``.

    Args:
        probabilities_nk: ``(n, k)`` rows of the source model's softmax (non-negative, each
            row summing to 1).
        labels_n: ``(n,)`` target labels, any values.

    Raises:
        InvalidInputError: non-finite values, rows that are not probability distributions,
            shape mismatch, fewer than 2 classes.

    Example:
        >>> theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
        >>> round(log_expected_empirical_prediction(theta, np.array([0, 0, 1, 1])), 4)
        -0.3426
    """
    labels_n = check_labels(labels_n)
    theta = check_matrix(probabilities_nk, labels_n.shape[0], name="probabilities")
    if (theta < 0).any() or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-6):
        raise InvalidInputError(
            "probabilities must be non-negative with rows summing to 1; pass raw logits to the "
            "'leep' score, which applies the softmax itself",
            field="logits",
        )
    n = theta.shape[0]
    joint = one_hot(labels_n).T @ theta / n  # (C, k)
    marginal = joint.sum(axis=0)  # P̂(z)
    seen = marginal > 0
    conditional = joint[:, seen] / marginal[seen]  # P̂(y | z), (C, k')
    expected = np.einsum("ik,ik->i", theta[:, seen], conditional[labels_n])
    return float(np.mean(np.log(expected)))


def _compute(inputs: ScoreInputs) -> ScoreOutput:
    assert inputs.logits is not None
    labels = check_labels(inputs.labels)
    logits = check_matrix(inputs.logits, labels.shape[0], name="logits")
    return ScoreOutput(value=log_expected_empirical_prediction(softmax(logits), labels))


register_score(
    ScoreSpec(
        name="leep",
        family="baseline",
        compute=_compute,
        needs=frozenset({"logits"}),
        direction="higher",
        paper="Nguyen et al. 2020, LEEP: A New Measure to Evaluate Transferability (ICML)",
        cost="cheap",
        description="Mean log-likelihood of the empirical predictor P(y|z) on softmax(logits).",
    )
)
