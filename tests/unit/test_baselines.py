"""Known-answer tests of the baselines, worked out by hand from the papers' formulas.

None of these compares a score with its own output; the authors' code is compared in
test_baselines_reference.py and the common properties in test_score_battery.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores.hscore import h_score, shrinkage_h_score
from zoorank.scores.leep import log_expected_empirical_prediction
from zoorank.scores.nce import negative_conditional_entropy
from zoorank.scores.transrate import coding_rate, transrate


def _blobs(seed: int, n: int, d: int, classes: int, separation: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    x = rng.standard_normal((n, d)) + separation * rng.standard_normal((classes, d))[y]
    return x, y


# ---------------------------------------------------------------- LEEP and NCE


def test_leep_by_hand_on_four_samples() -> None:
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    y = np.array([0, 0, 1, 1])
    # P(y|z0) = (1.7, 0.4)/2.1, P(y|z1) = (0.3, 1.6)/1.9
    expected = [
        0.9 * 1.7 / 2.1 + 0.1 * 0.3 / 1.9,
        0.8 * 1.7 / 2.1 + 0.2 * 0.3 / 1.9,
        0.1 * 0.4 / 2.1 + 0.9 * 1.6 / 1.9,
        0.3 * 0.4 / 2.1 + 0.7 * 1.6 / 1.9,
    ]
    assert log_expected_empirical_prediction(theta, y) == pytest.approx(np.mean(np.log(expected)))


def test_nce_by_hand() -> None:
    z = np.array([0, 0, 0, 1, 1, 2])
    y = np.array([0, 0, 1, 1, 1, 0])
    # H(Y|Z) = 3/6 H(2/3, 1/3) + 2/6 · 0 + 1/6 · 0
    h = 0.5 * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert negative_conditional_entropy(z, y) == pytest.approx(-h)


def test_nce_is_zero_when_source_labels_determine_targets() -> None:
    z = np.array([4, 4, 9, 9, 2, 2, 2])
    y = np.array([0, 0, 1, 1, 1, 1, 1])
    assert negative_conditional_entropy(z, y) == 0.0


def test_nce_of_independent_labels_is_minus_the_entropy_of_y() -> None:
    z = np.repeat([0, 1], 6)
    y = np.tile([0, 1, 2], 4)
    assert negative_conditional_entropy(z, y) == pytest.approx(-math.log(3))


def test_leep_equals_nce_when_the_source_softmax_is_one_hot() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    z = (y + (rng.random(200) < 0.3) * rng.integers(0, 7, 200)) % 7
    logits = 1000.0 * np.eye(7)[z]  # softmax is one-hot to within exp(-1000) = 0
    leep = get_score("leep")(ScoreInputs(labels=y, logits=logits)).value
    nce = get_score("nce")(ScoreInputs(labels=y, logits=logits)).value
    assert leep == pytest.approx(nce, rel=1e-12)
    assert nce == pytest.approx(negative_conditional_entropy(z, y), rel=1e-12)


def test_leep_is_zero_for_a_perfect_source_and_log_c_bound_for_an_uninformative_one() -> None:
    y = np.repeat(np.arange(3), 5)
    assert log_expected_empirical_prediction(np.eye(3)[y], y) == pytest.approx(0.0, abs=1e-15)
    uniform = np.full((15, 4), 0.25)
    assert log_expected_empirical_prediction(uniform, y) == pytest.approx(-math.log(3))


def test_leep_refuses_rows_that_are_not_probabilities() -> None:
    with pytest.raises(InvalidInputError, match="summing to 1"):
        log_expected_empirical_prediction(np.ones((4, 2)), np.array([0, 0, 1, 1]))


def test_leep_ignores_source_classes_no_sample_reaches() -> None:
    y = np.array([0, 0, 1, 1])
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    padded = np.concatenate([theta, np.zeros((4, 3))], axis=1)
    assert log_expected_empirical_prediction(padded, y) == pytest.approx(
        log_expected_empirical_prediction(theta, y)
    )


# ---------------------------------------------------------------- H-scores


def test_h_score_two_class_closed_form() -> None:
    # 1-D, two classes: cov(g)/cov(f) = between-class / total variance.
    x = np.array([[0.0], [1.0], [3.0], [4.0], [5.0], [9.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    mean = x.mean()
    total = np.sum((x - mean) ** 2)
    between = 3 * (x[:3].mean() - mean) ** 2 + 3 * (x[3:].mean() - mean) ** 2
    assert h_score(x, y) == pytest.approx(between / total)


def test_h_score_two_class_closed_form_in_two_dimensions() -> None:
    # H = n0 n1 / n · Δᵀ (XcᵀXc)⁻¹ Δ for two classes, Δ the difference of the class means.
    x, y = _blobs(1, 40, 2, 2)
    xc = x - x.mean(axis=0)
    delta = x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)
    n0, n1 = np.bincount(y)
    expected = n0 * n1 / 40 * delta @ np.linalg.solve(xc.T @ xc, delta)
    assert h_score(x, y) == pytest.approx(expected)


def test_h_score_saturates_at_c_minus_one_when_d_exceeds_n() -> None:
    x, y = _blobs(2, 30, 60, 4)
    assert h_score(x, y) == pytest.approx(3.0)


def test_h_score_is_c_minus_one_for_collapsed_classes_and_near_zero_for_noise() -> None:
    y = np.repeat(np.arange(5), 20)
    collapsed = np.random.default_rng(3).standard_normal((5, 8))[y]
    assert h_score(collapsed, y) == pytest.approx(4.0)
    noise = np.random.default_rng(4).standard_normal((10_000, 3))
    assert h_score(noise, np.arange(10_000) % 5) < 0.01


def test_shrinkage_h_score_against_sklearn_ledoit_wolf_written_out() -> None:
    x, y = _blobs(5, 80, 12, 3)
    xc = x - x.mean(axis=0)
    lw = LedoitWolf().fit(xc)
    g = np.zeros_like(xc)
    for c in range(3):
        g[y == c] = xc[y == c].mean(axis=0)
    expected = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - lw.shrinkage_) * np.cov(g.T)))
    value, alpha = shrinkage_h_score(x, y)
    assert alpha == pytest.approx(lw.shrinkage_, rel=1e-10)
    assert value == pytest.approx(expected, rel=1e-10)


def test_shrinkage_h_score_stays_below_the_unshrunk_bound_when_d_exceeds_n() -> None:
    # Shrinking only raises the eigenvalues: H_α ≤ n/(n−1) · H ≤ n/(n−1) · (C − 1).
    x, y = _blobs(6, 30, 90, 3)
    value, alpha = shrinkage_h_score(x, y)
    assert 0 < alpha <= 1
    assert 0 < value < 30 / 29 * h_score(x, y)


# ---------------------------------------------------------------- TransRate


def test_coding_rate_by_hand() -> None:
    z = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [1.0, 0.0]])
    # ZᵀZ = diag(2, 4), n = 4, ε = 0.5: ½ log((1 + 2/2)(1 + 4/2)) = ½ log 6
    assert coding_rate(z, eps=0.5) == pytest.approx(0.5 * math.log(6))
    assert coding_rate(z.T.copy(), eps=0.5) == pytest.approx(
        0.5 * np.linalg.slogdet(np.eye(4) + z @ z.T / (2 * 0.5))[1]
    )


def test_transrate_by_hand_without_class_recentring() -> None:
    z = np.array([[-1.0], [-1.0], [1.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    zc = z - z.mean()  # (-1.5, -1.5, 0.5, 2.5)
    whole = 0.5 * math.log(1 + np.sum(zc**2) / 4)
    class0 = 0.5 * math.log(1 + 2 * 1.5**2 / 2)
    class1 = 0.5 * math.log(1 + (0.5**2 + 2.5**2) / 2)
    assert transrate(z, y, eps=1.0) == pytest.approx(whole - (class0 + class1) / 2)


def test_transrate_refuses_non_positive_eps() -> None:
    x, y = _blobs(7, 10, 2, 2)
    with pytest.raises(InvalidInputError, match="eps"):
        transrate(x, y, eps=0.0)
