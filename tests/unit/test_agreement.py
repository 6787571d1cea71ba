"""Rank agreement statistics on pools whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from zoorank.errors import InvalidInputError
from zoorank.groundtruth.agreement import (
    best_within_noise,
    bootstrap_interval,
    count_above_twin,
    kendall_tau,
    orient,
    pearson_r,
    score_agreement,
    seed_agreement,
    top1_regret,
    weighted_tau,
)

ACC = {"a": 0.60, "b": 0.70, "c": 0.75, "d": 0.80, "e": 0.90}


def test_perfect_order_gives_one_and_zero_regret() -> None:
    values = {m: 10 * acc for m, acc in ACC.items()}
    result = score_agreement(values, ACC, direction="higher", resamples=200)
    assert result.weighted_tau == pytest.approx(1.0)
    assert result.kendall_tau == pytest.approx(1.0)
    assert result.pearson_r == pytest.approx(1.0)
    assert result.top1_regret == 0.0
    assert result.top1_model == "e"
    assert result.kendall_tau_ci == pytest.approx((1.0, 1.0))


def test_reversed_order_gives_minus_one() -> None:
    values = {m: -acc for m, acc in ACC.items()}
    result = score_agreement(values, ACC, direction="higher", resamples=0)
    assert result.weighted_tau == pytest.approx(-1.0)
    assert result.kendall_tau == pytest.approx(-1.0)
    assert result.pearson_r == pytest.approx(-1.0)
    assert result.top1_model == "a"
    assert result.top1_regret == pytest.approx(0.90 - 0.60)
    assert result.weighted_tau_ci is None


def test_lower_is_better_score_is_flipped() -> None:
    values = {m: -acc for m, acc in ACC.items()}  # a perfect lower-is-better score
    result = score_agreement(values, ACC, direction="lower", resamples=0)
    assert result.weighted_tau == pytest.approx(1.0)
    assert result.kendall_tau == pytest.approx(1.0)
    assert result.top1_regret == 0.0
    np.testing.assert_array_equal(orient([1.0, -2.0], "lower"), [-1.0, 2.0])
    with pytest.raises(InvalidInputError):
        orient([1.0], "sideways")


def test_regret_by_hand() -> None:
    # The score puts model 1 (accuracy 0.7) first; the best accuracy is 0.9.
    assert top1_regret(np.array([0.1, 0.9, 0.5]), np.array([0.8, 0.7, 0.9])) == pytest.approx(0.2)
    # Two models tied first: the regret of a random pick among them, 0.9 - (0.7 + 0.8) / 2.
    assert top1_regret(np.array([1.0, 1.0, 0.0]), np.array([0.7, 0.8, 0.9])) == pytest.approx(0.15)


def test_kendall_tau_by_hand() -> None:
    # Order 1,2,3,4 against 1,3,2,4: 5 concordant, 1 discordant pair -> (5 - 1) / 6.
    assert kendall_tau(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(4 / 6)


def test_weighted_tau_is_scipy_default_and_weighs_the_top() -> None:
    acc = np.arange(8, dtype=float)
    swap_top = acc.copy()
    swap_top[[6, 7]] = swap_top[[7, 6]]
    swap_bottom = acc.copy()
    swap_bottom[[0, 1]] = swap_bottom[[1, 0]]
    # Kendall τ cannot tell the two swaps apart; the weighted τ punishes the top swap more.
    assert kendall_tau(swap_top, acc) == pytest.approx(kendall_tau(swap_bottom, acc))
    assert weighted_tau(swap_top, acc) < weighted_tau(swap_bottom, acc) < 1.0
    assert weighted_tau(swap_top, acc) == stats.weightedtau(swap_top, acc).statistic


def test_constant_score_is_undefined_not_an_error() -> None:
    result = score_agreement(dict.fromkeys(ACC, 1.0), ACC, direction="higher", resamples=50)
    assert result.weighted_tau is None and result.kendall_tau is None and result.pearson_r is None
    assert result.weighted_tau_ci is None
    assert np.isnan(pearson_r(np.ones(3), np.arange(3.0)))


def test_missing_values_are_left_out() -> None:
    values = {"a": 1.0, "b": None, "c": 3.0, "d": float("nan"), "e": 5.0}
    result = score_agreement(values, ACC, direction="higher", resamples=0)
    assert result.models == ["a", "c", "e"]
    assert result.missing == ["b", "d"]
    assert result.n_models == 3
    assert result.kendall_tau == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.5, 0.9, size=30)
    score = acc + rng.normal(0.0, 0.1, size=30)
    low, high = bootstrap_interval(kendall_tau, score, acc, resamples=300, seed=1)
    assert low < kendall_tau(score, acc) < high
    assert -1.0 <= low < high <= 1.0
    assert bootstrap_interval(kendall_tau, score, acc, resamples=0) is None


def test_best_within_noise_separates_only_clear_differences() -> None:
    rng = np.random.default_rng(0)
    models = [f"m{i}" for i in range(30)]
    acc = dict(zip(models, rng.uniform(0.5, 0.9, size=30), strict=True))
    values = {
        "oracle": dict(acc),
        "oracle_copy": {m: 2 * v for m, v in acc.items()},
        "noise": dict(zip(models, rng.normal(size=30), strict=True)),
    }
    directions = dict.fromkeys(values, "higher")
    out = best_within_noise(values, directions, acc, statistic="kendall_tau", resamples=300)
    assert out["best"] == "oracle"
    assert "oracle_copy" in out["tied"]
    assert "noise" not in out["tied"]
    assert out["differences"]["noise"][0] > 0


def test_best_within_noise_skips_scores_known_for_few_models() -> None:
    values = {
        "prior": {"a": 0.1, "e": 0.9},  # perfect, but on 2 of 5 models
        "decent": {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0, "e": 5.0},
    }
    directions = dict.fromkeys(values, "higher")
    out = best_within_noise(values, directions, ACC, statistic="kendall_tau", resamples=50)
    assert out["best"] == "decent"
    assert out["excluded"] == ["prior"]


def test_seed_agreement() -> None:
    same = seed_agreement({0: ACC, 1: dict(ACC)}, resamples=100)
    assert same["mean_kendall_tau"] == pytest.approx(1.0)
    assert same["pairs"][0]["kendall_tau_ci"] == pytest.approx([1.0, 1.0])
    flipped = seed_agreement({0: ACC, 1: {m: -v for m, v in ACC.items()}, 2: ACC})
    assert [p["seeds"] for p in flipped["pairs"]] == [[0, 1], [0, 2], [1, 2]]
    assert flipped["min_kendall_tau"] == pytest.approx(-1.0)


def test_count_above_twin() -> None:
    values = {"x": 2.0, "x@random": 1.0, "y": 0.0, "y@random": 3.0, "z": 1.0}
    twins = {"x": "x@random", "y": "y@random", "z": "z@random"}
    assert count_above_twin(values, "higher", twins) == {"above": 1, "pairs": 2}
    assert count_above_twin(values, "lower", twins) == {"above": 1, "pairs": 2}


def test_refuses_mismatched_or_non_finite_arrays() -> None:
    with pytest.raises(InvalidInputError, match="one length"):
        kendall_tau(np.ones(3), np.ones(4))
    with pytest.raises(InvalidInputError, match="finite"):
        kendall_tau(np.array([1.0, np.nan]), np.ones(2))


def test_a_score_that_ties_on_every_model_is_undefined_and_names_no_first_model() -> None:
    result = score_agreement(dict.fromkeys(ACC, 2.0), ACC, direction="higher", resamples=0)
    assert result.undefined == "tie: the score gives every model the same value"
    assert result.top1_model is None and result.top1_tied == list(ACC)
    # a random pick among all five: 0.90 - mean(0.60, 0.70, 0.75, 0.80, 0.90) = 0.15
    assert result.top1_regret == pytest.approx(0.15)
    flat = score_agreement({m: 10 * a for m, a in ACC.items()}, dict.fromkeys(ACC, 0.5), direction="higher")
    assert (
        flat.undefined == "tie: every model has the same ground-truth accuracy" and flat.kendall_tau is None
    )
    alone = score_agreement({"a": 1.0}, ACC, direction="higher", resamples=0)
    assert alone.undefined == "1 model: nothing to rank"
    defined = score_agreement({"a": 1.0, "b": 1.0, "c": 3.0, "d": 3.0, "e": 2.0}, ACC, direction="higher")
    assert defined.undefined is None and defined.top1_model is None and defined.top1_tied == ["c", "d"]


def test_best_is_named_only_when_its_tau_is_positive() -> None:
    values = {
        "backwards": {m: -acc for m, acc in ACC.items()},  # τ = -1 by construction
        "mostly_backwards": {"a": 5.0, "b": 4.0, "c": 2.0, "d": 3.0, "e": 1.0},  # 1 of 10 pairs right
        "flat": dict.fromkeys(ACC, 1.0),
    }
    directions = dict.fromkeys(values, "higher")
    out = best_within_noise(values, directions, ACC, statistic="kendall_tau", resamples=50)
    assert out["best"] is None and out["tied"] == []
    assert out["value"] == pytest.approx((1 - 9) / 10)  # (concordant - discordant) / pairs
    assert (
        out["note"]
        == "no score agreed with the ground truth: the highest kendall_tau is -0.80 (mostly_backwards)"
    )
    assert out["undefined"] == ["flat"]
    values["forwards"] = {m: acc for m, acc in ACC.items()}
    out = best_within_noise(
        values, dict.fromkeys(values, "higher"), ACC, statistic="kendall_tau", resamples=50
    )
    assert out["best"] == "forwards" and out["value"] == pytest.approx(1.0) and out["note"] is None


def test_few_models_warning_lists_the_taus_that_so_few_models_allow() -> None:
    from itertools import permutations

    from zoorank.groundtruth.agreement import MIN_MODELS, few_models_warning

    for n in (2, 3):
        possible = {stats.kendalltau(np.arange(n), p).statistic for p in permutations(range(n))}
        message = few_models_warning(n)
        assert message is not None and message.startswith(f"only {n} models have a ground truth")
        listed = message.split("can only be ")[1].split(")")[0].split(", ")
        assert sorted(float(t) for t in listed) == pytest.approx(sorted(possible), abs=0.005)
    assert few_models_warning(1) is not None and few_models_warning(0) is not None
    assert few_models_warning(MIN_MODELS) is None and few_models_warning(12) is None
