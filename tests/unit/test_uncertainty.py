"""How sure a ranking is: half-samples, P(top-1), rank intervals, the top-two sentence."""

from __future__ import annotations

import numpy as np
import pytest

from zoorank.policy import RankingPolicy
from zoorank.scores import ScoreInputs
from zoorank.uncertainty import bootstrap_values, budgeted, half_samples, rank_uncertainty, resampled

LEEP_ONLY = RankingPolicy("leep", "weighted_z", ("leep",), (1.0,))
DIRECTIONS = {"leep": "higher"}


def _rank(values):
    return LEEP_ONLY.values(values, DIRECTIONS)


def _hot(temperature):
    from dataclasses import replace

    return replace(LEEP_ONLY, temperature=temperature)


def test_half_samples_are_stratified_halves_without_repeats():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    samples = half_samples(labels, resamples=50, seed=3)
    assert len(samples) == 50
    for rows in samples:
        assert len(set(rows.tolist())) == rows.size  # no row twice
        assert np.bincount(labels[rows]).tolist() == [5, 4, 2]  # ceil(n/2), at least 2
    again = half_samples(labels, resamples=50, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(samples, again, strict=True))


def test_only_array_scores_are_resampled():
    assert resampled("leep") and resampled("linear_probe") and resampled("imagenet_top1")
    assert not resampled("betti_slope") and not resampled("constrained_margin")


def test_p_top1_and_intervals_from_known_resamples():
    """a beats b in 3 of 4 resamples, c is always last: P(top-1) = 0.75 / 0.25 / 0, and
    the 90 % interval of a spans ranks 1-2."""
    boot = {
        "a": {"leep": [{"value": v} for v in (3.0, 3.0, 3.0, 1.0)]},
        "b": {"leep": [{"value": v} for v in (2.0, 2.0, 2.0, 2.5)]},
        "c": {"leep": [{"value": 0.0}] * 4},
    }
    point = {"a": {"leep": 3.0}, "b": {"leep": 2.0}, "c": {"leep": 0.0}}
    out = rank_uncertainty(point, boot, LEEP_ONLY, DIRECTIONS)
    assert out is not None and out["resamples"] == 4
    per = out["per_model"]
    assert (per["a"]["p_top1"], per["b"]["p_top1"], per["c"]["p_top1"]) == (0.75, 0.25, 0.0)
    assert per["a"]["rank_interval"] == [1, 2] and per["c"]["rank_interval"] == [3, 3]
    assert out["top_two"]["p_first_above_second"] == 0.75 and not out["top_two"]["settled"]
    assert "cannot be told apart" in out["top_two"]["text"]


def test_a_clear_winner_is_called_clear_and_nothing_resampled_gives_none():
    boot = {"a": {"leep": [{"value": 5.0}] * 10}, "b": {"leep": [{"value": 1.0}] * 10}}
    out = rank_uncertainty({"a": {"leep": 5.0}, "b": {"leep": 1.0}}, boot, LEEP_ONLY, DIRECTIONS)
    assert out["per_model"]["a"]["p_top1"] == 1.0 and out["top_two"]["settled"]
    # nothing resampled, one score: the point order, said to be unestimated, never "clear"
    bare = rank_uncertainty({"a": {"leep": 5.0}, "b": {"leep": 1.0}}, {}, LEEP_ONLY, DIRECTIONS)
    assert bare["sources"] == [] and not bare["top_two"]["settled"]
    assert "no estimate" in bare["top_two"]["text"] and "clear" not in bare["top_two"]["text"]
    # a pool of one model: one row, P(top-1) = 1, nothing to warn about
    one = rank_uncertainty({"a": {"leep": 1.0}}, {}, LEEP_ONLY, DIRECTIONS)
    assert one["per_model"]["a"] == {"p_top1": 1.0, "rank_interval": [1, 1]}
    assert one["top_two"]["text"] == "only one model was ranked"


def test_a_score_resampled_for_some_models_only_keeps_its_point_value_for_all():
    """b's half-sample values sit far below its full-sample point (as LogME's may): mixing them
    with a's point value would rank a first in every draw. Not resampled for a, the score is
    not resampled at all: the point ranking (b first) stands."""
    point = {"a": {"leep": 1.0}, "b": {"leep": 2.0}}
    boot = {"b": {"leep": [{"value": 0.0}] * 10}}
    out = rank_uncertainty(point, boot, _hot(0.01), DIRECTIONS)
    assert out is not None and out["resampled_scores"] == []
    assert out["per_model"]["b"]["p_top1"] == 1.0 and out["per_model"]["a"]["rank_interval"] == [2, 2]


def test_a_failed_resample_counts_as_missing_not_as_a_crash():
    boot = {"a": {"leep": [{"value": None}, {"value": 4.0}]}, "b": {"leep": [{"value": 1.0}] * 2}}
    out = rank_uncertainty({"a": {"leep": 4.0}, "b": {"leep": 1.0}}, boot, LEEP_ONLY, DIRECTIONS)
    assert out is not None and out["per_model"]["a"]["p_top1"] == 0.5


def test_bootstrap_values_recompute_leep_on_each_half():
    """LEEP of a model whose logits are a one-hot of the label is 0 on any subset."""
    labels = np.repeat(np.arange(3), 6)
    logits = np.full((18, 3), -50.0)
    logits[np.arange(18), labels] = 50.0
    inputs = ScoreInputs(labels=labels, logits=logits)
    boot = bootstrap_values(inputs, ["leep", "betti_slope"], {}, resamples=5, seed=0)
    assert list(boot) == ["leep"] and len(boot["leep"]) == 5
    assert all(entry["value"] == pytest.approx(0.0, abs=1e-9) for entry in boot["leep"])


def test_budget_takes_the_cheapest_scores_that_fit():
    seconds = {"leep": 0.02, "linear_probe": 0.7, "nce": 0.01, "betti_slope": 0.0}
    # budget 0.2 * 10 s = 2 s; one resample costs half a point computation
    assert budgeted(["leep", "linear_probe", "nce", "betti_slope"], seconds, 10.0, resamples=100) == [
        "nce",
        "leep",
    ]
    assert budgeted(["linear_probe"], seconds, 100.0, resamples=100) == []  # 35 s > 20 s
    assert budgeted(["linear_probe"], seconds, 400.0, resamples=100) == ["linear_probe"]


def test_a_ranking_reports_p_top1_interval_and_what_was_resampled(small_options):
    from dataclasses import replace

    from zoorank.rank import rank

    result = rank(
        "builtin:digits",
        ["mobilenetv2_100", "mobilenetv2_100@random"],
        ["leep", "nce", "betti_slope"],
        replace(small_options, bootstrap_resamples=20),
    )
    ranking = result.ranking
    assert sum(row["p_top1"] for row in ranking["aggregate"]) == pytest.approx(1.0)
    assert all(1 <= row["rank_interval"][0] <= row["rank_interval"][1] <= 2 for row in ranking["aggregate"])
    uncertainty = ranking["uncertainty"]
    assert uncertainty["resamples"] == 20 and set(uncertainty["resampled_scores"]) <= {"leep", "nce"}
    assert "betti_slope" not in uncertainty["resampled_scores"]  # taps: kept at its point value
    assert uncertainty["top_two"]["text"]
    off = rank(
        "builtin:digits",
        ["mobilenetv2_100", "mobilenetv2_100@random"],
        ["leep"],
        replace(small_options, bootstrap_resamples=0),
    )
    # no resamples asked for: every ranking still has P(top-1), from what remains (here none:
    # one score), and says so instead of calling the order certain
    assert off.ranking["uncertainty"]["sources"] == []
    assert all("p_top1" in row and "rank_interval" in row for row in off.ranking["aggregate"])


def test_a_temperature_draws_rankings_from_plackett_luce():
    """Gumbel-max: with a temperature T, P(first) is softmax(value / T) (a formula, checked
    here by 20 000 draws), and the job's values alone (no resample) are enough."""
    point = {"a": {"leep": 1.0}, "b": {"leep": 0.5}, "c": {"leep": 0.0}}
    out = rank_uncertainty(point, {}, _hot(0.7), DIRECTIONS, draws=20000)
    assert out is not None and out["resamples"] == 0 and out["draws"] == 20000
    combined = _rank(point)
    logits = np.array([combined[m] for m in "abc"]) / 0.7
    expected = np.exp(logits) / np.exp(logits).sum()
    got = np.array([out["per_model"][m]["p_top1"] for m in "abc"])
    np.testing.assert_allclose(got, expected, atol=0.015)


def test_plackett_luce_likelihood_and_temperature_fit():
    from zoorank.groundtruth.selection import TEMPERATURE_GRID, fit_temperature, plackett_luce_loglik

    # two models, true order b then a: log(e^{s_b} / (e^{s_a} + e^{s_b})) with s = v / T
    value = plackett_luce_loglik(np.array([0.0, 2.0]), np.array([0.1, 0.9]), 2.0)
    assert value == pytest.approx(1.0 - np.log(np.exp(0.0) + np.exp(1.0)))
    rng = np.random.default_rng(0)
    accuracy = [rng.uniform(size=20) for _ in range(5)]
    exact = [(a * 100, a) for a in accuracy]  # values order the models exactly: sharpest T
    noise = [(rng.normal(size=20), a) for a in accuracy]  # values unrelated: flattest T
    assert fit_temperature(exact) == TEMPERATURE_GRID[0]
    assert fit_temperature(noise) > 10.0
