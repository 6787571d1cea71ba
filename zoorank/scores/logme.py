"""LogME: log of the maximum marginal evidence of a Bayesian linear model on the features.

You, Liu, Wang, Long. "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021; the fixed-point algorithm is from the extension "Ranking and Tuning
Pre-trained Models: A New Paradigm for Exploiting Model Hubs" (JMLR 2022, arXiv 2110.10545),
which is what the authors' ``LogME.fit`` runs by default.

For each class c a one-vs-rest target ``y_c ∈ {0,1}ⁿ`` is regressed on the features ``F``
with prior ``w ~ N(0, α⁻¹I)`` and noise ``N(0, β⁻¹)``. With ``σᵢ`` the squared singular
values of ``F`` and ``xᵢ = uᵢᵀy`` the target in the left singular basis, ``t = α/β``:

    γ   = Σ σᵢ/(σᵢ + t)
    m²  = Σ σᵢ xᵢ²/(t + σᵢ)²                      (= ||m||², m the posterior mean)
    r²  = Σ xᵢ² t²/(t + σᵢ)² + (||y||² − Σ xᵢ²)   (= ||Fm − y||²)
    α ← γ/(m² + 1e-5),   β ← (n − γ)/(r² + 1e-5)           (fixed point, ≤ 11 steps,
                                                            stop when |Δt|/t ≤ 1e-3)
    L   = [d/2 log α + n/2 log β − ½ Σᵢ log(α + βσᵢ) − β/2 r² − α/2 m² − n/2 log 2π] / n

and the score is the mean of ``L`` over classes. One eigendecomposition serves every class,
and the fixed point runs for all classes at once.

Quirk of the published code, reproduced on purpose: the sum ``Σᵢ log(α + βσᵢ)`` runs over
the ``min(n, d)`` singular values only. When ``d > n`` the ``d − n`` zero eigenvalues of
``FᵀF`` are left out although ``d/2 log α`` counts all ``d``, so the value exceeds the exact
log evidence by ``(d − n)/(2n) log α`` and grows with ``d``. ``exact_evidence=True`` adds
those terms back (the exact evidence, as the authors' earlier ICML algorithm computes it);
for ``n ≥ d`` both settings give the same value. Also as published: for ``d > n`` the
fixed point converges slowly and the 11 steps often stop before it has converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

_EPS = 1e-5  # added to the denominators of the α and β updates, as the authors' code does


@dataclass(frozen=True)
class LogMEFit:
    """Per-class result of the evidence maximisation: arrays of shape ``(C,)``."""

    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    iterations: np.ndarray


def log_maximum_evidence(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    max_iter: int = 11,
    tol: float = 1e-3,
    exact_evidence: bool = False,
) -> float:
    """LogME of features ``(n, d)`` for integer labels ``(n,)``; higher is better.

    Args:
        features_nd: ``(n, d)`` pre-logit features, any real dtype (computed in float64).
        labels_n: ``(n,)`` class labels, any values (re-encoded to ``0..C-1``).
        max_iter: most fixed-point steps per class (the authors use 11).
        tol: stop a class when ``|t_new − t|/t ≤ tol`` (the authors use 1e-3).
        exact_evidence: include the ``d − n`` zero eigenvalues when ``d > n`` (see module doc).

    Returns:
        The mean over classes of the maximised log evidence divided by ``n``.

    Raises:
        InvalidInputError: non-finite or all-zero features, shape mismatch, fewer than 2 classes.

    Example:
        >>> x = np.repeat(np.eye(3), 10, axis=0); y = np.repeat(np.arange(3), 10)
        >>> log_maximum_evidence(x, y) > log_maximum_evidence(x, np.roll(y, 5))
        True
    """
    fit = log_maximum_evidence_per_class(
        features_nd, labels_n, max_iter=max_iter, tol=tol, exact_evidence=exact_evidence
    )
    return float(np.mean(fit.evidence))


def log_maximum_evidence_per_class(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    max_iter: int = 11,
    tol: float = 1e-3,
    exact_evidence: bool = False,
) -> LogMEFit:
    """The per-class evidences, α, β and step counts behind :func:`log_maximum_evidence`."""
    labels_n = check_labels(labels_n)
    f = check_matrix(features_nd, labels_n.shape[0])
    n, d = f.shape
    targets = np.zeros((n, int(labels_n.max()) + 1))
    targets[np.arange(n), labels_n] = 1.0  # (n, C) one-vs-rest targets

    if n > d:
        # Eigendecomposition of the (d, d) Gram matrix; with p = Vᵀ Fᵀ y = s·x, the updates
        # need only p² = σ x², which stays well defined where σ → 0 (no division by s).
        sigma, v = np.linalg.eigh(f.T @ f)
        sigma = np.clip(sigma, 0.0, None)
        p2 = (v.T @ (f.T @ targets)) ** 2  # (d, C)
        x2 = None
    else:
        # Thin SVD of F itself, as the authors do for n ≤ d: u (n, n), s (n,).
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        sigma = s**2
        x2 = (u.T @ targets) ** 2  # (n, C)
        p2 = sigma[:, None] * x2
    if sigma.max() <= 0.0:
        raise InvalidInputError("features are all zero; LogME needs features that vary", field="features")
    y2 = targets.sum(axis=0)  # ||y_c||², the targets being 0/1
    outside = y2 - x2.sum(axis=0) if x2 is not None else None  # ||y||² − Σ x², n ≤ d only
    null_dims = max(d - n, 0) if exact_evidence else 0

    n_classes = targets.shape[1]
    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    evidence = np.zeros(n_classes)
    iterations = np.zeros(n_classes, dtype=np.int64)
    active = np.ones(n_classes, dtype=bool)
    sig = sigma[:, None]
    for _ in range(max_iter):
        t = alpha / beta
        denom = (t + sig) ** 2
        gamma = (sig / (sig + t)).sum(axis=0)
        m2 = (p2 / denom).sum(axis=0)
        if x2 is None:
            res2 = y2 - (p2 * (sig + 2.0 * t) / denom).sum(axis=0)
        else:
            res2 = (x2 * t**2 / denom).sum(axis=0) + outside
        new_alpha = gamma / (m2 + _EPS)
        new_beta = (n - gamma) / (res2 + _EPS)
        new_evidence = (
            d / 2.0 * np.log(new_alpha)
            + n / 2.0 * np.log(new_beta)
            - 0.5 * np.log(new_alpha + new_beta * sig).sum(axis=0)
            - 0.5 * null_dims * np.log(new_alpha)
            - new_beta / 2.0 * res2
            - new_alpha / 2.0 * m2
            - n / 2.0 * np.log(2.0 * np.pi)
        ) / n
        converged = np.abs(new_alpha / new_beta - t) / t <= tol
        alpha = np.where(active, new_alpha, alpha)
        beta = np.where(active, new_beta, beta)
        evidence = np.where(active, new_evidence, evidence)
        iterations += active
        active &= ~converged
        if not active.any():
            break
    return LogMEFit(evidence=evidence, alpha=alpha, beta=beta, iterations=iterations)


def _compute(inputs: ScoreInputs, *, exact_evidence: bool) -> ScoreOutput:
    assert inputs.features is not None
    fit = log_maximum_evidence_per_class(inputs.features, inputs.labels, exact_evidence=exact_evidence)
    return ScoreOutput(
        value=float(np.mean(fit.evidence)),
        details={"per_class_evidence": [float(e) for e in fit.evidence]},
    )


register_score(
    ScoreSpec(
        name="logme",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="You et al. 2021, LogME: Practical Assessment of Pre-trained Models (ICML)",
        cost="cheap",
        params={"exact_evidence": False},
        description="Mean over classes of the maximised log evidence of a linear model, / n.",
    )
)
