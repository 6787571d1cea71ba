"""LogME against its definition: a brute-force maximisation of the exact evidence.

The reference values of the authors' code are checked in test_baselines_reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores.logme import log_maximum_evidence, log_maximum_evidence_per_class


def dense_log_evidence(f: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """Log evidence / n of y ~ N(Fw, β⁻¹I), w ~ N(0, α⁻¹I), written with dense d×d matrices."""
    n, d = f.shape
    alpha, beta = np.exp(log_alpha), np.exp(log_beta)
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    value = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - 0.5 * logdet
        - beta / 2 * np.sum((f @ m - y) ** 2)
        - alpha / 2 * m @ m
        - n / 2 * np.log(2 * np.pi)
    )
    return float(value / n)


def brute_force_logme(f: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of max over (α, β) of the dense evidence, by Nelder-Mead."""
    return float(np.mean(brute_force_per_class(f, labels)))


def brute_force_per_class(f: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per class (one-vs-rest target), the max over (α, β) of the dense evidence."""
    best = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)
        result = minimize(
            lambda p, y=y: -dense_log_evidence(f, y, p[0], p[1]),
            x0=np.zeros(2),
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000},
        )
        best.append(float(-result.fun))
    return best


def _blobs(seed: int, n: int, d: int, classes: int, separation: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    x = rng.standard_normal((n, d)) + separation * rng.standard_normal((classes, d))[y]
    return x, y


@pytest.mark.parametrize(("n", "d", "classes"), [(60, 5, 3), (40, 12, 2), (90, 3, 4)])
def test_matches_brute_force_maximum_of_exact_evidence(n: int, d: int, classes: int) -> None:
    x, y = _blobs(n + d, n, d, classes)
    # The fixed point stops at |Δt|/t ≤ 1e-3, near a flat maximum: agreement to ~1e-4.
    assert log_maximum_evidence(x, y) == pytest.approx(brute_force_logme(x, y), rel=1e-4)


def test_exact_evidence_when_d_exceeds_n() -> None:
    # For d > n the fixed point converges slowly (the authors' 11 steps often stop short of
    # it), so run it to convergence; the result is then the maximum of the exact evidence.
    x, y = _blobs(3, 30, 50, 2, separation=0.3)
    converged = log_maximum_evidence(x, y, exact_evidence=True, max_iter=2000, tol=1e-12)
    assert converged == pytest.approx(brute_force_logme(x, y), rel=1e-6)


def test_default_omits_null_space_terms_like_the_authors_code() -> None:
    n, d = 12, 30
    x, y = _blobs(4, n, d, 3)
    default = log_maximum_evidence_per_class(x, y)
    exact = log_maximum_evidence_per_class(x, y, exact_evidence=True)
    np.testing.assert_allclose(default.alpha, exact.alpha)
    gap = (d - n) / (2 * n) * np.log(default.alpha)
    np.testing.assert_allclose(default.evidence - exact.evidence, gap, rtol=1e-12)


def test_same_for_n_at_least_d_with_or_without_exact_evidence() -> None:
    x, y = _blobs(5, 50, 50, 3)
    assert log_maximum_evidence(x, y) == log_maximum_evidence(x, y, exact_evidence=True)


def test_separable_beats_random_labels() -> None:
    x = np.repeat(np.eye(4), 15, axis=0) + 0.05 * np.random.default_rng(0).standard_normal((60, 4))
    y = np.repeat(np.arange(4), 15)
    shuffled = np.random.default_rng(1).permutation(y)
    assert log_maximum_evidence(x, y) > log_maximum_evidence(x, shuffled) + 0.5


def test_invariant_to_class_names_and_sample_order() -> None:
    x, y = _blobs(6, 80, 10, 4)
    value = log_maximum_evidence(x, y)
    assert log_maximum_evidence(x, np.array([7, 3, 11, 5])[y]) == pytest.approx(value, rel=1e-12)
    order = np.random.default_rng(2).permutation(80)
    assert log_maximum_evidence(x[order], y[order]) == pytest.approx(value, rel=1e-10)


def test_rank_deficient_features_give_the_evidence_of_their_column_space() -> None:
    """Known answer: the evidence is the likelihood of y ~ N(0, FFᵀ/α + I/β), which reads F only
    through FFᵀ; [x, x, 0, 0] has FFᵀ = 2xxᵀ, the same as √2·x, and scaling F is a change of α,
    which is maximised over. So duplicated and all-zero columns leave LogME(x) unchanged."""
    x, y = _blobs(7, 100, 6, 3)
    doubled = np.concatenate([x, x, np.zeros((100, 2))], axis=1)
    expected = brute_force_logme(x, y)
    assert log_maximum_evidence(doubled, y) == pytest.approx(expected, rel=1e-4)
    assert log_maximum_evidence(doubled, y) == pytest.approx(log_maximum_evidence(x, y), rel=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_non_finite_features(bad: float) -> None:
    x, y = _blobs(8, 20, 3, 2)
    x[3, 1] = bad
    with pytest.raises(InvalidInputError, match="non-finite"):
        log_maximum_evidence(x, y)


def test_refuses_all_zero_features() -> None:
    with pytest.raises(InvalidInputError, match="all zero"):
        log_maximum_evidence(np.zeros((10, 3)), np.arange(10) % 2)


def test_registered_score_reports_each_class_evidence_maximised_by_brute_force() -> None:
    x, y = _blobs(9, 30, 4, 3)
    out = get_score("logme")(ScoreInputs(labels=y, features=x))
    expected = brute_force_per_class(x, y)
    assert out.details["per_class_evidence"] == pytest.approx(expected, rel=1e-4)
    assert out.value == pytest.approx(np.mean(expected), rel=1e-4)
