"""H-score and its shrinkage (Ledoit-Wolf) variant.

Bao, Li, Huang, Zheng, Zhao, Tong. "An Information-Theoretic Approach to Transferability in
Task Transfer Learning", ICIP 2019, eq. (2):

    H(f) = tr( cov(f)⁺ cov(g) ),   g(xᵢ) = E[f | y = yᵢ] (the class mean of xᵢ's class)

with sample covariances (``1/(n−1)``) and ``⁺`` the pseudo-inverse. Ibrahim, Ponomareva,
Mazumder. "Newer is not always better: Rethinking transferability metrics, their
peculiarities, stability and performance", ECML-PKDD 2022, eq. (5):

    H_α(f) = tr( cov_α(f)⁻¹ (1 − α) cov(g) ),   cov_α = (1 − α) S + α tr(S)/d I

with ``S`` the ``1/n`` covariance and ``α`` the Ledoit-Wolf shrinkage (as scikit-learn's
``LedoitWolf``), exactly as the reference implementation (tllib ``regularized_h_score``)
mixes the ``1/n`` and ``1/(n−1)`` normalisations.

Both are computed from one eigendecomposition of the smaller Gram matrix of the centred
features ``Xc``: with eigenpairs ``(λᵢ, vᵢ)`` of ``XcᵀXc`` and ``δ_c`` the centred class
means, ``w_ci = n_c (vᵢᵀ δ_c)²`` and

    H   = Σ_{c,i} w_ci / λᵢ
    H_α = (1 − α)/(n − 1) Σ_{c,i} w_ci / ((1 − α) λᵢ/n + α tr(S)/d)

summing over ``λᵢ`` above ``max(n, d) · eps · λ_max`` (numpy's rank tolerance; the reference
code's ``pinv(rcond=1e-15)`` inverts round-off when ``cov(f)`` is singular, e.g. ``d ≥ n``).
Equivalently ``H = Σ_c ||P 1_c||² / n_c`` with ``P`` the projector onto the column space of
``Xc``; so ``0 ≤ H ≤ C − 1``, with ``C − 1`` reached whenever ``d ≥ n − 1`` (generic features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import class_means, one_hot
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score


@dataclass(frozen=True)
class _Spectrum:
    """Eigenvalues ``λ (r,)`` of ``XcᵀXc`` above the rank tolerance and ``w (C, r)``."""

    eigenvalues: np.ndarray
    weights: np.ndarray
    gram_frobenius2: float  # ||XcᵀXc||_F², for the Ledoit-Wolf shrinkage
    trace: float  # ||Xc||_F²
    n: int
    d: int


def _spectrum(features_nd: np.ndarray, labels_n: np.ndarray) -> tuple[_Spectrum, np.ndarray]:
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    n, d = x.shape
    xc = x - x.mean(axis=0)
    gram = xc.T @ xc if n > d else xc @ xc.T
    eigenvalues, vectors = np.linalg.eigh(gram)
    top = eigenvalues[-1]
    if top <= 0.0:
        raise InvalidInputError(
            "features have zero variance (every row is the same); nothing to score",
            field="features",
        )
    keep = eigenvalues > top * max(n, d) * np.finfo(np.float64).eps
    counts = np.bincount(labels).astype(np.float64)
    if n > d:
        means, _ = class_means(xc, labels)  # δ_c, the data being centred
        weights = counts[:, None] * (means @ vectors[:, keep]) ** 2
    else:
        # vᵢᵀ δ_c = sᵢ uᵢᵀ1_c / n_c, so w_ci = λᵢ (uᵢᵀ1_c)² / n_c.
        weights = eigenvalues[keep] * (one_hot(labels).T @ vectors[:, keep]) ** 2 / counts[:, None]
    spectrum = _Spectrum(
        eigenvalues=eigenvalues[keep],
        weights=weights,
        gram_frobenius2=float(np.sum(gram**2)),
        trace=float(np.sum(xc**2)),
        n=n,
        d=d,
    )
    return spectrum, xc


def h_score(features_nd: np.ndarray, labels_n: np.ndarray) -> float:
    """H-score ``tr(cov(f)⁺ cov(E[f|y]))`` of features ``(n, d)`` for labels ``(n,)``.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.

    Raises:
        InvalidInputError: non-finite or constant features, shape mismatch, < 2 classes.

    Example:
        >>> x = np.array([[0.0], [2.0], [4.0], [6.0]]); y = np.array([0, 0, 1, 1])
        >>> round(h_score(x, y), 4)  # cov(f) = 20/3, cov(g) = 16/3
        0.8
    """
    spectrum, _ = _spectrum(features_nd, labels_n)
    return float(np.sum(spectrum.weights / spectrum.eigenvalues))


def ledoit_wolf_shrinkage(xc_nd: np.ndarray, gram_frobenius2: float) -> float:
    """Ledoit-Wolf shrinkage of centred rows, as scikit-learn's ``ledoit_wolf_shrinkage``.

    ``gram_frobenius2`` is ``||XcᵀXc||_F²`` (equal to ``||XcXcᵀ||_F²``), passed in because
    the caller has the smaller Gram matrix already.
    """
    n, d = xc_nd.shape
    if d == 1:
        return 0.0
    row_norms2 = np.einsum("ij,ij->i", xc_nd, xc_nd)
    mu = row_norms2.sum() / (n * d)  # tr(S)/d
    beta_sum = float(np.sum(row_norms2**2))  # Σ_jk (X²ᵀX²)_jk
    delta_sum = gram_frobenius2 / n**2  # ||S||_F²
    beta = (beta_sum / n - delta_sum) / (d * n)
    delta = (delta_sum - 2.0 * mu * row_norms2.sum() / n + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def shrinkage_h_score(features_nd: np.ndarray, labels_n: np.ndarray) -> tuple[float, float]:
    """Shrinkage H-score ``H_α`` of features ``(n, d)`` and the Ledoit-Wolf ``α`` it used.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.

    Raises:
        InvalidInputError: non-finite or constant features, shape mismatch, < 2 classes.

    Example:
        >>> x = np.array([[0.0], [2.0], [4.0], [6.0]]); y = np.array([0, 0, 1, 1])
        >>> value, alpha = shrinkage_h_score(x, y)  # d = 1: no shrinkage, S = 5, cov(g) = 16/3
        >>> round(value, 4), alpha
        (1.0667, 0.0)
    """
    spectrum, xc = _spectrum(features_nd, labels_n)
    alpha = ledoit_wolf_shrinkage(xc, spectrum.gram_frobenius2)
    n, d = spectrum.n, spectrum.d
    target = spectrum.trace / (n * d)  # tr(S)/d
    shrunk = (1.0 - alpha) * spectrum.eigenvalues / n + alpha * target
    value = (1.0 - alpha) / (n - 1) * np.sum(spectrum.weights / shrunk)
    return float(value), alpha


def _compute_h(inputs: ScoreInputs) -> ScoreOutput:
    assert inputs.features is not None
    return ScoreOutput(value=h_score(inputs.features, inputs.labels))


def _compute_shrinkage(inputs: ScoreInputs) -> ScoreOutput:
    assert inputs.features is not None
    value, alpha = shrinkage_h_score(inputs.features, inputs.labels)
    return ScoreOutput(value=value, details={"shrinkage": alpha})


register_score(
    ScoreSpec(
        name="hscore",
        family="baseline",
        compute=_compute_h,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Bao et al. 2019, An Information-Theoretic Approach to Transferability (ICIP)",
        cost="cheap",
        description="tr(pinv(Cov X) Cov g(X)), g the class-mean map; between 0 and C − 1.",
    )
)

register_score(
    ScoreSpec(
        name="shrinkage_hscore",
        family="baseline",
        compute=_compute_shrinkage,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Ibrahim et al. 2022, Newer is not always better: Rethinking transferability "
        "metrics (ECML-PKDD)",
        cost="cheap",
        description="H-score with the Ledoit-Wolf shrunk covariance in place of Cov(X).",
    )
)
