"""GBC: Gaussian Bhattacharyya coefficient, the overlap of the target classes in feature space.

Pándy, Agostinelli, Uijlings, Ferrari, Mensink. "Transferability Estimation using
Bhattacharyya Class Separability", CVPR 2022, eq. (1)-(4); as the authors' code
(google-research ``stable_transfer/transferability/gbc.py``).

The features are reduced by PCA to ``dims`` components (64 in the paper). Each class ``c`` is
a Gaussian with mean ``μ_c`` and diagonal covariance ``σ²_c`` (the per-dimension population
variance, floored at 1e-4 as the authors' code does). For two classes, with
``σ² = (σ²_i + σ²_j)/2``,

    D_B(i, j) = ⅛ Σ (μ_i − μ_j)²/σ² + ½ [Σ log σ² − ½ Σ log σ²_i − ½ Σ log σ²_j]
    GBC       = − Σ_{i ≠ j} exp(−D_B(i, j))        (ordered pairs: each pair counted twice)

It is ≤ 0; 0 means no two classes overlap. ``"spherical"`` (the default of the authors'
experiment config; the paper's tables use both) replaces ``σ²_c`` by its mean over the
dimensions and, as the authors' code does, counts the log-determinant term once rather than
once per dimension: ``D_B = ⅛ Σ (μ_i − μ_j)²/σ² + ½ [log σ² − ½ log σ²_i − ½ log σ²_j]``.
"""

from __future__ import annotations

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import class_means, one_hot, principal_components
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

_VARIANCE_FLOOR = 1e-4
_GAUSSIANS = ("diagonal", "spherical")


def bhattacharyya_distances(means_cp: np.ndarray, variances_cp: np.ndarray) -> np.ndarray:
    """``(C, C)`` Bhattacharyya distances between diagonal Gaussians (rows of the inputs).

    ``variances_cp`` is ``(C, p)`` per-dimension variances, or ``(C, 1)`` for the authors'
    spherical form (one variance per class, its log-determinant term counted once).
    """
    log_var = np.log(variances_cp)
    distances = np.empty((means_cp.shape[0], means_cp.shape[0]))
    for i in range(means_cp.shape[0]):  # one row at a time keeps memory at C·p
        average = (variances_cp[i] + variances_cp) / 2.0
        mahalanobis = np.sum((means_cp[i] - means_cp) ** 2 / average, axis=1) / 8.0
        log_ratio = np.sum(np.log(average), axis=1) - 0.5 * log_var[i].sum() - 0.5 * log_var.sum(axis=1)
        distances[i] = mahalanobis + 0.5 * log_ratio
    return distances


def gaussian_bhattacharyya_coefficient(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    dims: int = 64,
    gaussian: str = "diagonal",
) -> float:
    """GBC of features ``(n, d)`` for labels ``(n,)``; higher (closer to 0) is better.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.
        dims: PCA components kept (capped at ``min(n, d)``); the paper uses 64.
        gaussian: ``"diagonal"`` (per-dimension variances) or ``"spherical"``.

    Raises:
        InvalidInputError: non-finite or constant features, shape mismatch, < 2 classes,
            ``dims < 1``, an unknown ``gaussian``.

    Example:
        >>> x = np.array([[0.0], [2.0], [4.0], [6.0]]); y = np.array([0, 0, 1, 1])
        >>> round(gaussian_bhattacharyya_coefficient(x, y), 4)  # −2 exp(−⅛ · 4²/1)
        -0.2707
    """
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    if dims < 1:
        raise InvalidInputError(f"dims must be at least 1, got {dims}", field="params")
    if gaussian not in _GAUSSIANS:
        raise InvalidInputError(
            f"gaussian must be one of {', '.join(_GAUSSIANS)}, got {gaussian!r}", field="params"
        )
    z = principal_components(x, components=dims).scores
    means, counts = class_means(z, labels)
    spread = one_hot(labels).T @ (z - means[labels]) ** 2 / counts[:, None]  # 1/n_c variance
    variances = np.maximum(spread, _VARIANCE_FLOOR)
    if gaussian == "spherical":
        variances = variances.mean(axis=1, keepdims=True)
    coefficients = np.exp(-bhattacharyya_distances(means, variances))
    np.fill_diagonal(coefficients, 0.0)
    return float(-coefficients.sum())


def _compute(inputs: ScoreInputs, *, dims: int, gaussian: str) -> ScoreOutput:
    assert inputs.features is not None
    return ScoreOutput(
        value=gaussian_bhattacharyya_coefficient(inputs.features, inputs.labels, dims=dims, gaussian=gaussian)
    )


register_score(
    ScoreSpec(
        name="gbc",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Pándy et al. 2022, Transferability Estimation using Bhattacharyya Class Separability (CVPR)",
        cost="cheap",
        params={"dims": 64, "gaussian": "diagonal"},
        description="−Σ pairwise Bhattacharyya coefficients of class Gaussians on PCA features.",
    )
)
