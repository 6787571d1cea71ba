"""TransRate: mutual information between features and labels, as a coding-rate difference.

Huang, Huang, Rong, Yang, Wei. "Frustratingly Easy Transferability Estimation", ICML 2022,
eq. (5)-(6) and the code printed in its appendix (also tllib ``ranking/transrate.py``).

With ``Z`` the features centred over all samples and ``Z_k`` the rows of class ``k`` (not
re-centred), the coding rate at distortion ``ε`` is

    R(Z, ε) = ½ logdet(I_d + ZᵀZ / (n ε))        (n the number of rows of Z)

and TransRate = ``R(Z, ε) − (1/C) Σ_k R(Z_k, ε)``: the class rates are averaged without
weights, as in the authors' code. ``ε = 1e-4`` by default. Each ``logdet`` is taken on the
smaller of ``ZᵀZ`` and ``ZZᵀ`` (Sylvester's identity) with a Cholesky factorisation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score


def coding_rate(z_nd: np.ndarray, *, eps: float = 1e-4) -> float:
    """``½ logdet(I + ZᵀZ/(n ε))`` of rows ``Z (n, d)``, taken as is (no centring)."""
    n, d = z_nd.shape
    gram = z_nd.T @ z_nd if n > d else z_nd @ z_nd.T
    gram /= n * eps
    gram[np.diag_indices_from(gram)] += 1.0
    factor = scipy.linalg.cholesky(gram, lower=True, check_finite=False)
    return float(np.sum(np.log(np.diag(factor))))  # ½ · 2 Σ log Lᵢᵢ


def transrate(features_nd: np.ndarray, labels_n: np.ndarray, *, eps: float = 1e-4) -> float:
    """TransRate of features ``(n, d)`` for labels ``(n,)``; higher is better.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.
        eps: the distortion ``ε`` (the authors' default 1e-4), > 0.

    Raises:
        InvalidInputError: non-finite features, shape mismatch, < 2 classes, ``eps ≤ 0``.

    Example:
        >>> z = np.array([[-1.0], [-1.0], [1.0], [1.0]]); y = np.array([0, 0, 1, 1])
        >>> round(transrate(z, y, eps=1.0), 4)  # ½ log 2 − ½ log 2: Z_k is not re-centred
        0.0
    """
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    if not eps > 0:
        raise InvalidInputError(f"eps must be > 0, got {eps}", field="params")
    z = x - x.mean(axis=0)
    whole = coding_rate(z, eps=eps)
    per_class = [coding_rate(z[labels == k], eps=eps) for k in range(int(labels.max()) + 1)]
    return whole - float(np.mean(per_class))


def _compute(inputs: ScoreInputs, *, eps: float) -> ScoreOutput:
    assert inputs.features is not None
    return ScoreOutput(value=transrate(inputs.features, inputs.labels, eps=eps))


register_score(
    ScoreSpec(
        name="transrate",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Huang et al. 2022, Frustratingly Easy Transferability Estimation (ICML)",
        cost="cheap",
        params={"eps": 1e-4},
        description="Coding rate of the centred features minus the mean coding rate per class.",
    )
)
