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
from zoorank.scores import ScoreInputs, ScoreOutput, get_score
from zoorank.scores.gbc import gaussian_bhattacharyya_coefficient
from zoorank.scores.hscore import h_score, shrinkage_h_score
from zoorank.scores.knn import knn_accuracy
from zoorank.scores.leep import log_expected_empirical_prediction
from zoorank.scores.nce import negative_conditional_entropy
from zoorank.scores.ncti import neural_collapse_terms, normalise_over_pool
from zoorank.scores.nleep import gaussian_mixture_leep
from zoorank.scores.prior import imagenet_top1_prior
from zoorank.scores.sfda import power_iteration_eigenvalue, self_challenging_fisher_discriminant
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


# ---------------------------------------------------------------- GBC


def test_gbc_by_hand_in_one_dimension() -> None:
    # Classes {0, 2}, {4, 6}, {20, 22}: population variance 1 each, so D_B = (Δμ)²/8.
    x = np.array([[0.0], [2.0], [4.0], [6.0], [20.0], [22.0]])
    y = np.array([0, 0, 1, 1, 2, 2])
    expected = -2 * (math.exp(-(4**2) / 8) + math.exp(-(20**2) / 8) + math.exp(-(16**2) / 8))
    assert gaussian_bhattacharyya_coefficient(x, y) == pytest.approx(expected)
    assert gaussian_bhattacharyya_coefficient(x, y, gaussian="spherical") == pytest.approx(expected)


def test_gbc_log_determinant_term_by_hand() -> None:
    # Equal means, variances 1 and 4: D_B = ½ [log 2.5 − ½ log 1 − ½ log 4].
    x = np.array([[-1.0], [1.0], [-2.0], [2.0]])
    y = np.array([0, 0, 1, 1])
    distance = 0.5 * (math.log(2.5) - 0.5 * math.log(4.0))
    assert gaussian_bhattacharyya_coefficient(x, y) == pytest.approx(-2 * math.exp(-distance))


def test_gbc_diagonal_and_the_authors_spherical_form_by_hand() -> None:
    # Already on principal axes. Class 0: x ∈ {−4, −2}, y = ±1; class 1: x ∈ {2, 4}, y = ±2.
    x = np.array([[a, b] for a in (-4.0, -2.0) for b in (-1.0, 1.0)])
    x = np.concatenate([x, np.array([[a, b] for a in (2.0, 4.0) for b in (-2.0, 2.0)])])
    y = np.repeat([0, 1], 4)
    # diagonal: σ²₀ = (1, 1), σ²₁ = (1, 4), average (1, 2.5)
    diagonal = 6**2 / 8 + 0.5 * (math.log(2.5) - 0.5 * math.log(4.0))
    assert gaussian_bhattacharyya_coefficient(x, y) == pytest.approx(-2 * math.exp(-diagonal))
    # spherical: σ²₀ = 1, σ²₁ = 2.5, average 1.75; the log term counted once, not per dim
    spherical = 6**2 / 1.75 / 8 + 0.5 * (math.log(1.75) - 0.5 * math.log(2.5))
    assert gaussian_bhattacharyya_coefficient(x, y, gaussian="spherical") == pytest.approx(
        -2 * math.exp(-spherical)
    )


def test_gbc_floors_zero_variance_like_the_authors() -> None:
    x = np.array([[0.0], [0.0], [0.1], [0.1]])  # each class is one repeated point
    y = np.array([0, 0, 1, 1])
    # variances floored at 1e-4: D_B = 0.1²/(8 · 1e-4)
    expected = -2 * math.exp(-(0.1**2) / 8e-4)
    assert gaussian_bhattacharyya_coefficient(x, y) == pytest.approx(expected)


def test_gbc_refuses_unknown_gaussian() -> None:
    x, y = _blobs(8, 20, 3, 2)
    with pytest.raises(InvalidInputError, match="diagonal"):
        gaussian_bhattacharyya_coefficient(x, y, gaussian="full")


# ---------------------------------------------------------------- SFDA


def test_sfda_first_pass_is_the_shrunk_fisher_classifier_written_out() -> None:
    x, y = _blobs(9, 90, 4, 3, separation=0.7)
    _, details = self_challenging_fisher_discriminant(x, y)
    lam = details["shrinkage"]
    priors = np.bincount(y) / 90
    means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    within = sum(priors[c] * np.cov(x[y == c].T, bias=True) for c in range(3))
    shrunk = (1 - lam) * within + lam * np.trace(within) / 4 * np.eye(4)
    inverse = np.linalg.inv(shrunk)
    scores = x @ inverse @ means.T - 0.5 * np.diag(means @ inverse @ means.T) + np.log(priors)
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert details["first_pass_score"] == pytest.approx(probabilities[np.arange(90), y].mean())
    # The 3-step power iteration underestimates the largest eigenvalue: λ ≥ exp(−5 λ_max).
    assert lam >= math.exp(-5 * np.linalg.eigvalsh(within)[-1])


def test_power_iteration_estimate_approaches_the_largest_eigenvalue() -> None:
    a = np.diag([3.0, 1.0, 0.5])
    assert power_iteration_eigenvalue(a) == pytest.approx(3.0, rel=1e-3)
    assert power_iteration_eigenvalue(np.array([[1.0, -1.0], [-1.0, 1.0]])) == pytest.approx(2.0)


def test_sfda_score_and_log_likelihood_are_consistent() -> None:
    x, y = _blobs(10, 120, 6, 4, separation=0.5)
    value, details = self_challenging_fisher_discriminant(x, y)
    assert 0.25 < value < 1.0
    assert details["mean_log_likelihood"] <= math.log(value)  # Jensen


# ---------------------------------------------------------------- NCTI


def _terms(seli: float, ncc: float, vc: float) -> ScoreOutput:
    return ScoreOutput(value=0.0, details={"seli": seli, "ncc": ncc, "vc": vc})


def test_ncti_pool_normalisation_by_hand() -> None:
    pool = [_terms(10.0, 0.5, 3.0), _terms(30.0, 0.9, 2.0), _terms(20.0, 0.6, 2.5)]
    # seli' = 0, 1, ½; ncc' = 0, 1, ¼; vc' = 1, 0, ½
    assert normalise_over_pool(pool) == pytest.approx([-1.0, 2.0, 0.25])


def test_ncti_pool_normalisation_of_ties_and_single_models() -> None:
    assert normalise_over_pool([_terms(1.0, 0.5, 2.0)]) == [0.0]
    assert normalise_over_pool([_terms(1.0, 0.5, 2.0), _terms(1.0, 0.7, 2.0)]) == [0.0, 1.0]
    assert normalise_over_pool([]) == []
    with pytest.raises(InvalidInputError, match="seli"):
        normalise_over_pool([ScoreOutput(value=1.0)])


def test_ncti_registered_with_pool_step_and_raw_terms() -> None:
    spec = get_score("ncti")
    assert spec.pool_normalise is normalise_over_pool
    x, y = _blobs(11, 120, 70, 3)
    out = spec(ScoreInputs(labels=y, features=x))
    assert set(out.details) >= {"seli", "ncc", "vc"}
    terms = neural_collapse_terms(x, y)
    assert out.value == pytest.approx(terms["ncc"] + terms["seli"] - terms["vc"])


def test_ncti_vc_term_by_hand_for_confident_predictions() -> None:
    # Collapsed, far-apart classes: each P_c is (n_c, C) with one column of ~1s, so
    # ||P_c||_* = sqrt(n_c) and vc = log Σ_c sqrt(n_c).
    y = np.repeat(np.arange(3), [4, 9, 16])
    x = 100.0 * np.eye(3)[y] + 1e-3 * np.random.default_rng(12).standard_normal((29, 3))
    terms = neural_collapse_terms(x, y)
    assert terms["ncc"] == pytest.approx(1.0)
    assert terms["vc"] == pytest.approx(math.log(2 + 3 + 4), rel=1e-6)


# ---------------------------------------------------------------- N-LEEP


def test_nleep_is_zero_when_the_mixture_recovers_the_classes() -> None:
    y = np.repeat(np.arange(3), 30)
    x = 50.0 * np.eye(3)[y] + np.random.default_rng(13).standard_normal((90, 3))
    value, details = gaussian_mixture_leep(x, y, components_per_class=1)
    assert details["components"] == 3
    assert value == pytest.approx(0.0, abs=1e-6)


def test_nleep_of_one_blob_is_minus_the_label_entropy() -> None:
    # One Gaussian blob: whatever the mixture does, P(y|z) ≈ class frequencies. With
    # balanced labels independent of x, N-LEEP ≈ −log C.
    rng = np.random.default_rng(14)
    x = rng.standard_normal((400, 2))
    y = np.arange(400) % 2
    value, _ = gaussian_mixture_leep(x, y, components_per_class=1)
    assert value == pytest.approx(-math.log(2), abs=0.02)


def test_nleep_caps_components_and_dims() -> None:
    x, y = _blobs(15, 40, 30, 10)  # 5 · 10 components capped at n // 2
    _, details = gaussian_mixture_leep(x, y, max_dims=4)
    assert details["components"] == 20
    assert details["dims"] == 4


# ---------------------------------------------------------------- kNN and the prior


def test_knn_by_hand_with_a_tie() -> None:
    angles = np.deg2rad([0.0, 10.0, 20.0, 90.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = np.array([0, 0, 1, 1])
    # 0°→10° right; 10°: 0° and 20° tie → ½; 20°→10° wrong; 90°→20° right
    assert knn_accuracy(x, y, k=1) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_knn_majority_vote_by_hand() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.05], [1.0, 0.1], [0.0, 1.0], [0.05, 1.0], [1.0, 0.15]])
    y = np.array([0, 0, 0, 1, 1, 1])
    # Angles 0°, 2.86°, 5.71° (class 0), 90°, 87.1°, 8.53° (class 1). With k = 2 the last
    # sample's neighbours are two class-0 samples: wrong. The 5.71° sample has one neighbour
    # of each class; the tie goes to the closer one, 8.53° (class 1): wrong. The rest: right.
    assert knn_accuracy(x, y, k=2) == pytest.approx(4 / 6)


def test_knn_ignores_scale_and_handles_zero_rows() -> None:
    x, y = _blobs(16, 60, 5, 3, separation=2.0)
    scaled = x * np.random.default_rng(17).uniform(0.1, 10.0, (60, 1))
    assert knn_accuracy(scaled, y) == pytest.approx(knn_accuracy(x, y))
    x[0] = 0.0
    assert 0.0 <= knn_accuracy(x, y) <= 1.0
    with pytest.raises(InvalidInputError, match="k must"):
        knn_accuracy(x, y, k=60)


def test_imagenet_prior_reads_meta_and_nothing_else() -> None:
    spec = get_score("imagenet_top1")
    assert spec.needs == frozenset({"meta"})
    out = spec(ScoreInputs(labels=np.array([0, 1]), meta={"imagenet_top1": 80.3}))
    assert out.value == 80.3
    for meta in ({}, {"imagenet_top1": None}, {"imagenet_top1": "n/a"}, {"imagenet_top1": True}):
        with pytest.raises(InvalidInputError, match="imagenet_top1"):
            imagenet_top1_prior(meta)
