"""Successive halving of a shortlist over epochs (zoorank.confirm.halving): known answers
worked out by hand, divergence, the budget, ties, and properties over random curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoorank.confirm import (
    accuracy_interval,
    clamp_top_k,
    estimated_cost,
    minimum_budget,
    rungs,
    successive_halving,
)
from zoorank.errors import InvalidInputError

# Four models, max 4 epochs -> rungs [1, 2, 4]. By hand:
# rung 1 (epoch 1): all four train 1 epoch, cost 1+2+3+4 = 10; val a .5, b .6, c .4, d .3;
#   keep ceil(4/2) = 2: b, a (cutoff .5).
# rung 2 (epoch 2): b, a train 1 more, cost 2+1 = 3 (13); val a .6, b .65; last two -> keep b.
# rung 3 (epoch 4): b trains 2 more, cost 2*2 = 4 (17). Pick b, runner-up a.
# c, the late bloomer (.95 at epoch 4), is gone at rung 1: the price of halving.
CURVES = {
    "a": [0.5, 0.6, 0.7, 0.8],
    "b": [0.6, 0.65, 0.66, 0.67],
    "c": [0.4, 0.7, 0.9, 0.95],
    "d": [0.3, 0.3, 0.3, 0.3],
}
COST = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
ORDER = ["a", "b", "c", "d"]


def test_four_models_by_hand():
    result = successive_halving(CURVES, COST, top_k_order=ORDER, max_epochs=4)
    assert result.schedule == (1, 2, 4)
    assert (result.pick, result.runner_up, result.cost) == ("b", "a", 17.0)
    assert result.complete and not result.stopped_by_budget and result.note is None
    got = {m: (r.epochs, r.rung, r.cost, r.val_accuracy) for m, r in result.records.items()}
    assert got == {
        "a": (2, 2, 2.0, 0.6),
        "b": (4, 3, 8.0, 0.67),
        "c": (1, 1, 3.0, 0.4),
        "d": (1, 1, 4.0, 0.3),
    }
    assert result.records["b"].reason == "kept"
    assert result.records["a"].reason == "eliminated at rung 2 (val acc 0.6 < cutoff 0.65)"
    assert result.records["c"].reason == "eliminated at rung 1 (val acc 0.4 < cutoff 0.5)"
    assert list(result.records) == ORDER
    # Worst case before any curve is known: rung 1: 10; rung 2: the two dearest (4+3) = 7;
    # rung 3: 2 epochs of the dearest = 8 -> 25.
    assert estimated_cost(COST, ORDER, 4) == 25.0
    assert minimum_budget(COST, ORDER) == 10.0
    assert result.to_dict()["records"][1] == {
        "model": "b",
        "epochs": 4,
        "val_accuracy": 0.67,
        "rung": 3,
        "reason": "kept",
        "cost": 8.0,
    }


def test_five_models_equal_cost_odd_counts():
    # rungs(8) = [1, 2, 4, 8]; 5 -> ceil(5/2) = 3 -> 2 -> 1 at the last rung.
    # cost: 5*1 + 3*1 + 2*2 + 1*4 = 16, which is also the dry-run estimate (equal costs).
    curves = {f"m{i}": [0.1 * i + 0.01 * e for e in range(1, 9)] for i in range(5)}
    order = [f"m{i}" for i in range(5)]
    cost = dict.fromkeys(order, 1.0)
    result = successive_halving(curves, cost, top_k_order=order, max_epochs=8)
    assert result.pick == "m4" and result.runner_up == "m3"
    assert result.cost == 16.0 == estimated_cost(cost, order, 8)
    assert [result.records[m].epochs for m in order] == [1, 1, 2, 4, 8]


def test_a_diverged_model_leaves_at_its_rung():
    curves = dict(CURVES, b=[0.6, math.nan, 0.9, 0.9])  # would have won
    result = successive_halving(curves, COST, top_k_order=ORDER, max_epochs=4)
    assert result.records["b"].reason == "diverged (NaN)"
    assert result.records["b"].rung == 2 and math.isnan(result.records["b"].val_accuracy)
    assert result.to_dict()["records"][1]["val_accuracy"] is None
    # rung 2: b (diverged) and a train: 10 + 2 + 1; a alone is left and trains on: + 2 * 1.
    assert (result.pick, result.cost) == ("a", 15.0)
    assert result.records["a"].reason == "kept"


def test_none_also_counts_as_diverged():
    curves: dict[str, Sequence[float | None]] = {**CURVES, "b": [0.6, None, 0.9, 0.9]}
    assert successive_halving(curves, COST, top_k_order=ORDER, max_epochs=4).pick == "a"


def test_everything_diverged_no_pick():
    curves = {m: [math.nan] * 4 for m in ORDER}
    result = successive_halving(curves, COST, top_k_order=ORDER, max_epochs=4)
    assert result.pick is None and "every shortlisted model diverged" in (result.note or "")
    assert all(r.reason == "diverged (NaN)" for r in result.records.values())
    assert result.cost == 10.0


def test_the_last_model_diverging_late_leaves_no_pick():
    curves = dict(CURVES, b=[0.6, 0.65, 0.66, math.nan])
    result = successive_halving(curves, COST, top_k_order=ORDER, max_epochs=4)
    assert result.pick is None and result.runner_up == "a"
    assert "last model" in (result.note or "") and result.cost == 17.0


def test_budget_stops_before_the_next_rung():
    # rung 1 costs 10 (fits 12), rung 2 would make 13 > 12: stop; b (.6) beats a (.5).
    result = successive_halving(CURVES, COST, top_k_order=ORDER, max_epochs=4, budget=12.0)
    assert (result.pick, result.runner_up, result.cost) == ("b", "a", 10.0)
    assert result.stopped_by_budget and not result.complete
    assert result.records["a"].reason == "budget spent" and result.records["b"].reason == "kept"
    note = result.note or ""
    assert "stopped before rung 2" in note and "fine-tune b on to epoch 4" in note


def test_budget_stops_the_lone_survivor_short_of_the_end():
    result = successive_halving(CURVES, COST, top_k_order=ORDER, max_epochs=4, budget=13.0)
    assert (result.pick, result.cost, result.records["b"].epochs) == ("b", 13.0, 2)
    assert result.stopped_by_budget and not result.complete


def test_a_budget_of_exactly_the_estimate_never_stops():
    budget = estimated_cost(COST, ORDER, 4)
    result = successive_halving(CURVES, COST, top_k_order=ORDER, max_epochs=4, budget=budget)
    assert not result.stopped_by_budget and result.cost == 17.0


@pytest.mark.parametrize("budget", [9.0, 0.0, -1.0, math.nan, math.inf, True, "10"])
def test_bad_budgets_are_refused(budget):
    with pytest.raises(InvalidInputError) as err:
        successive_halving(CURVES, COST, top_k_order=ORDER, max_epochs=4, budget=budget)
    assert err.value.field == "budget"


def test_ties_go_to_the_higher_ranked_model():
    curves = {"x": [0.5, 0.7], "y": [0.5, 0.7]}
    cost = {"x": 1.0, "y": 1.0}
    assert successive_halving(curves, cost, top_k_order=["y", "x"], max_epochs=2).pick == "y"
    result = successive_halving(curves, cost, top_k_order=["x", "y"], max_epochs=2)
    assert result.pick == "x"
    assert result.records["y"].reason.startswith("eliminated at rung 1 (val acc 0.5 = cutoff 0.5")


def test_one_model_trains_to_the_end():
    result = successive_halving(CURVES, COST, top_k_order=["c"], max_epochs=4)
    assert (result.pick, result.runner_up, result.cost) == ("c", None, 12.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"top_k_order": []}, "top_k_order"),
        ({"top_k_order": ["a", "a"]}, "top_k_order"),
        ({"top_k_order": "ab"}, "top_k_order"),
        ({"top_k_order": ["a", "zz"]}, "epoch_cost"),
        ({"max_epochs": 5}, "curves"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"eta": 1}, "eta"),
        ({"eta": 2.5}, "eta"),
    ],
)
def test_bad_arguments_name_their_field(kwargs, field):
    with pytest.raises(InvalidInputError) as err:
        successive_halving(CURVES, COST, **({"top_k_order": ORDER, "max_epochs": 4} | kwargs))
    assert err.value.field == field


def test_rungs():
    assert rungs(8) == [1, 2, 4, 8]
    assert rungs(10) == [1, 2, 4, 8, 10]
    assert rungs(10, eta=3) == [1, 3, 9, 10]
    assert rungs(1) == [1]
    assert rungs(8, 2, min_epochs=3) == [3, 6, 8]
    for bad, field in [((0,), "max_epochs"), ((8, 1), "eta"), ((4, 2, 5), "min_epochs")]:
        with pytest.raises(InvalidInputError) as err:
            rungs(*bad)
        assert err.value.field == field


def test_clamp_top_k():
    assert clamp_top_k(3, 25) == (3, None)
    assert clamp_top_k(25, 25) == (25, None)
    k, note = clamp_top_k(10, 4)
    assert k == 4 and note is not None and "10" in note and "4" in note
    bad: Any
    for bad in (0, -2, True, 2.0):
        with pytest.raises(InvalidInputError) as err:
            clamp_top_k(bad, 5)
        assert err.value.field == "top_k"
    with pytest.raises(InvalidInputError):
        clamp_top_k(3, 0)


def test_accuracy_interval_contains_the_mean_and_shrinks_with_rows():
    small = np.array([1] * 34 + [0] * 6)  # 40 rows at 0.85
    large = np.tile(small, 10)  # 400 rows at 0.85
    lo, hi = accuracy_interval(small)
    assert 0.0 <= lo < 0.85 < hi <= 1.0
    lo_l, hi_l = accuracy_interval(large)
    assert lo_l < 0.85 < hi_l and hi_l - lo_l < (hi - lo) / 2
    assert accuracy_interval(small.astype(bool)) == (lo, hi)  # bool rows, same seed
    assert accuracy_interval(np.ones(5)) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("rows", "kwargs"),
    [
        ([], {}),
        ([[1, 0]], {}),
        ([0, 2], {}),
        ([0.5], {}),
        ([1, 0], {"level": 1.0}),
        ([1, 0], {"resamples": 0}),
    ],
)
def test_accuracy_interval_refuses_bad_input(rows, kwargs):
    with pytest.raises(InvalidInputError):
        accuracy_interval(np.array(rows), **kwargs)


@st.composite
def shortlists(draw):
    n = draw(st.integers(1, 8))
    max_epochs = draw(st.integers(1, 12))
    models = [f"m{i}" for i in range(n)]
    grid = st.integers(0, 20).map(lambda i: i / 20)  # ties happen
    curves = {m: draw(st.lists(grid, min_size=max_epochs, max_size=max_epochs)) for m in models}
    cost = {m: draw(st.integers(1, 9)) / 2 for m in models}
    order = draw(st.permutations(models))
    return curves, cost, list(order), max_epochs, draw(st.integers(2, 5))


@settings(max_examples=150, deadline=None)
@given(shortlists(), st.floats(0.0, 1.5))
def test_properties_over_random_curves(case, fraction):
    curves, cost, order, max_epochs, eta = case
    full = successive_halving(curves, cost, top_k_order=order, max_epochs=max_epochs, eta=eta)
    assert full.pick in order and full.complete
    assert full.cost == pytest.approx(sum(r.cost for r in full.records.values()))
    assert full.cost <= estimated_cost(cost, order, max_epochs, eta) * (1 + 1e-12)
    assert sum(r.reason == "kept" for r in full.records.values()) == 1
    if eta >= len(order):  # everybody but the best at rung 1 leaves there
        best = max(order, key=lambda m: (curves[m][0], -order.index(m)))
        assert full.pick == best
        assert all(r.rung == 1 and r.epochs == 1 for m, r in full.records.items() if m != best)
        assert full.records[best].epochs == max_epochs
    lowest = minimum_budget(cost, order)
    budget = lowest + fraction * (estimated_cost(cost, order, max_epochs, eta) - lowest)
    capped = successive_halving(
        curves, cost, top_k_order=order, max_epochs=max_epochs, eta=eta, budget=budget
    )
    assert capped.pick in order and capped.cost <= budget * (1 + 1e-9)
    if fraction >= 1.0:
        assert capped.pick == full.pick and not capped.stopped_by_budget
