"""The default ranking: combining scores, choosing a default out of sample, and how sure a
ranking is. Every expectation is computed by hand or follows from how the data were built."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoorank.combine import combine, mean_rank, standardise, weighted_z
from zoorank.errors import InvalidInputError
from zoorank.groundtruth.selection import (
    TargetData,
    Training,
    best_single,
    bootstrap_mean_interval,
    choose,
    heldout_taus,
    nested_heldout,
    nonnegative_stack,
    population_taus,
    signed_ridge_stack,
    single,
    top_k,
)
from zoorank.policy import RankingPolicy

DIRECTIONS = {"good": "higher", "bad": "higher", "noise": "lower"}


def test_standardise_and_weighted_z_by_hand():
    # oriented column [1, 2, 3]: mean 2, population std sqrt(2/3)
    z = standardise(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(z, [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    # a missing value goes 1 below the lowest z; a constant column contributes nothing
    np.testing.assert_allclose(standardise(np.array([1.0, np.nan, 3.0])), [-1.0, -2.0, 1.0])
    np.testing.assert_allclose(standardise(np.array([5.0, 5.0, 5.0])), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(standardise(np.array([5.0, np.nan])), [0.0, -1.0])
    matrix = np.array([[1.0, 3.0], [3.0, 1.0]])  # z columns: [-1, 1] and [1, -1]
    np.testing.assert_allclose(weighted_z(matrix, [0.75, 0.25]), [-0.5, 0.5])
    with pytest.raises(InvalidInputError, match="weights"):
        weighted_z(matrix, [1.0])


def test_mean_rank_puts_a_missing_value_last():
    matrix = np.array([[3.0, np.nan], [1.0, 2.0], [2.0, 1.0]])
    # column 1 ranks [1, 3, 2]; column 2: missing -> last: [3, 1, 2]
    np.testing.assert_allclose(mean_rank(matrix), [-2.0, -2.0, -2.0])


def test_combine_orients_lower_is_better_scores():
    values = {"a": {"noise": 1.0}, "b": {"noise": 5.0}}
    assert combine(values, DIRECTIONS, method="weighted_z", scores=["noise"], weights=[1.0]) == {
        "a": 1.0,
        "b": -1.0,
    }
    with pytest.raises(InvalidInputError, match="method"):
        combine(values, DIRECTIONS, method="vote", scores=["noise"])


def test_a_single_score_policy_ranks_like_the_score():
    values = {m: {"good": v} for m, v in zip("abcd", [0.3, -2.0, 7.0, 1.0], strict=True)}
    policy = RankingPolicy("s", "weighted_z", ("good",), (1.0,))
    combined = policy.values(values, DIRECTIONS)
    assert sorted(combined, key=combined.get, reverse=True) == ["c", "d", "a", "b"]


def test_released_policies_are_data_and_the_default_is_monotone():
    from zoorank.policy import DEFAULT_POLICY, DEFAULT_RANKING, PREVIOUS_POLICIES, released

    assert DEFAULT_RANKING.name == DEFAULT_POLICY == released(DEFAULT_POLICY)["name"]
    assert DEFAULT_RANKING.weights is None or min(DEFAULT_RANKING.weights) >= 0
    for name in PREVIOUS_POLICIES:
        assert released(name)["name"] == name


def test_available_keeps_the_weights_of_the_scores_a_job_has():
    policy = RankingPolicy("p", "weighted_z", ("good", "bad", "noise"), (0.5, 0.2, 0.3))
    kept = policy.available(["noise", "good"])
    assert kept.scores == ("good", "noise") and kept.weights == (0.5, 0.3)


def _targets(n_targets: int = 6, n_models: int = 12, seed: int = 0) -> list[TargetData]:
    """Targets where 'good' is accuracy plus small noise, 'bad' is minus accuracy and 'noise'
    is unrelated: any sound selection must end on 'good'."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n_targets):
        acc = rng.uniform(0.2, 0.9, n_models)
        values = {
            f"m{i}": {"good": acc[i] + rng.normal(0, 0.01), "bad": -acc[i], "noise": rng.normal()}
            for i in range(n_models)
        }
        out.append(TargetData(f"t{t}", values, {f"m{i}": float(acc[i]) for i in range(n_models)}))
    return out


def test_leave_one_target_out_chooses_the_informative_score():
    targets = _targets()
    scores = ["good", "bad", "noise"]
    procedures = [single(s) for s in scores] + [
        best_single(scores, DIRECTIONS),
        top_k(2, "weighted_z", scores, DIRECTIONS),
        nonnegative_stack(scores, DIRECTIONS),
    ]
    chosen, table = choose(procedures, targets, DIRECTIONS)
    assert table["single:bad"] == {f"{t.name} x all": pytest.approx(-1.0) for t in targets}
    assert all(v > 0.9 for v in table["single:good"].values())
    # parsimony: 'good' alone is as good as anything else, and it is one score
    assert chosen.name == "single:good"
    assert best_single(scores, DIRECTIONS).fit(Training(tuple(targets))).scores == ("good",)
    # monotone: the non-negative stacker never subtracts 'bad' (which points the wrong way),
    # where the signed one (the procedure of heldout-ridge-v3) does
    stack = nonnegative_stack(scores, DIRECTIONS).fit(Training(tuple(targets)))
    assert (
        "bad" not in stack.scores and dict(zip(stack.scores, stack.weights or (), strict=True))["good"] > 0.9
    )
    signed = dict(
        zip(scores, signed_ridge_stack(scores, DIRECTIONS).fit(Training(tuple(targets))).weights, strict=True)
    )
    assert signed["good"] > 0 > signed["bad"]
    # top-k leaves out a score whose training tau is negative
    assert "bad" not in top_k(3, "mean_rank", scores, DIRECTIONS).fit(Training(tuple(targets))).scores
    nested = nested_heldout(procedures, targets, DIRECTIONS)
    assert set(nested) == {t.name for t in targets}
    assert all(row["weighted_tau"] > 0.9 for row in nested.values())


def test_holding_out_a_population_exposes_a_stacker_that_learned_it():
    """In population A the score 'proxy' tracks accuracy and 'good' is noise; in population B it
    is the other way round. Fitted on both, a stacker looks fine leave-one-target-out; fitted
    without the held-out population (what users' models are to the benchmark) it ranks that
    population by the wrong score. The target x population figure says so; LOTO does not."""
    rng = np.random.default_rng(1)
    directions = {"good": "higher", "proxy": "higher"}
    targets = []
    for t in range(5):
        values, accuracy, populations = {}, {}, {}
        for pop, tracks in (("A", "proxy"), ("B", "good")):
            for i in range(8):
                model = f"{pop}{i}"
                acc = rng.uniform(0.2, 0.9)
                other = "good" if tracks == "proxy" else "proxy"
                values[model] = {tracks: acc, other: rng.normal()}
                accuracy[model], populations[model] = acc, pop
        targets.append(TargetData(f"t{t}", values, accuracy, populations))
    proxy_only = population_taus(single("proxy"), targets, directions)
    assert all(v > 0.9 for k, v in proxy_only.items() if k.endswith("x A"))
    stacked = population_taus(top_k(1, "weighted_z", ["good", "proxy"], directions), targets, directions)
    # fitted on population B only, top-1 picks 'good': useless on A
    assert max(v for k, v in stacked.items() if k.endswith("x A")) < 0.9


def test_the_held_out_target_never_informs_its_own_policy():
    """On the held-out target the informative score is reversed: a procedure that peeked would
    pick it there; fitted on the others it must still pick 'good' and score -1 on it."""
    targets = _targets(n_targets=4)
    flipped = targets[0]
    targets[0] = TargetData(
        flipped.name,
        {m: {**v, "good": -v["good"], "bad": -v["bad"]} for m, v in flipped.values.items()},
        flipped.accuracy,
    )
    taus = heldout_taus(best_single(["good", "bad"], DIRECTIONS), targets, DIRECTIONS)
    assert taus[flipped.name] < -0.9


def test_bootstrap_mean_interval_contains_the_mean_and_is_degenerate_when_constant():
    lo, hi = bootstrap_mean_interval([0.2, 0.4, 0.6, 0.8])
    assert lo <= 0.5 <= hi
    assert bootstrap_mean_interval([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3))


def test_the_default_ranking_is_what_a_default_job_computes_and_says_where_it_came_from():
    import json
    from pathlib import Path

    from zoorank.policy import DEFAULT_RANKING, describe, score_catalogue
    from zoorank.rank import resolve_scores

    assert resolve_scores(None) == list(DEFAULT_RANKING.scores)  # nothing else is computed
    provenance = DEFAULT_RANKING.provenance
    assert provenance["benchmark"] == "benchmarks/results/heldout.md"
    assert len(provenance["benchmark_commit"]) == 40 and provenance["targets"] >= 8
    lo, hi = provenance["heldout_ci95"]
    assert lo <= provenance["heldout_weighted_tau"] <= hi
    assert f"{provenance['heldout_weighted_tau']:+.2f}" in describe()
    rows = {row["name"]: row for row in score_catalogue()}
    assert all(rows[s]["in_default_ranking"] for s in DEFAULT_RANKING.scores)
    assert rows["betti_decay"]["heldout_weighted_tau"] is not None  # every Betti variant reported
    # the released default is exactly what the benchmark chose
    chosen = json.loads(Path("benchmarks/results/heldout.json").read_text())["chosen"]["policy"]
    assert list(DEFAULT_RANKING.scores) == chosen["scores"] and DEFAULT_RANKING.method == chosen["method"]
    assert DEFAULT_RANKING.weights == (None if chosen["weights"] is None else tuple(chosen["weights"]))
    assert DEFAULT_RANKING.temperature == pytest.approx(chosen["temperature"])
