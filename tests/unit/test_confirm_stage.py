"""The confirmation stage's core (zoorank.confirm): successive halving driven rung by rung
(``partial=True``), the paired difference, the request, the plan (split, minimum budget, cost
estimates), the decision and the answer on hand-made units, and one small real training run
(checkpoints, exact resume, cancellation, divergence)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoorank.confirm import (
    HalvingResult,
    estimated_cost,
    minimum_budget,
    paired_difference,
    successive_halving,
)
from zoorank.confirm.plan import ConfirmPlan, confirm_split, plan_confirmation, plan_from_dict
from zoorank.confirm.request import DEFAULT_SETTINGS, ConfirmRequest
from zoorank.confirm.stage import answer, curves, decide, run_confirmation
from zoorank.confirm.units import UnitResult, checkpoint_dir, train_unit
from zoorank.errors import Cancelled, InvalidInputError

# --------------------------------------------------------------------------------------------
# successive_halving(partial=True): rung by rung, the same decisions as on full curves

CURVES = {
    "a": [0.5, 0.6, 0.7, 0.8],
    "b": [0.6, 0.65, 0.66, 0.67],
    "c": [0.4, 0.7, 0.9, 0.95],
    "d": [0.3, 0.3, 0.3, 0.3],
}
COST = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
ORDER = ["a", "b", "c", "d"]


def drive(
    full: dict[str, list[float]],
    cost: dict[str, float],
    order: list[str],
    max_epochs: int,
    eta: int = 2,
    budget: float | None = None,
    min_epochs: int = 1,
) -> tuple[HalvingResult, list[tuple[int, tuple[str, ...]]]]:
    """Call successive_halving(partial=True) on what is known, extend only the models it waits
    for to the rung it names (from ``full``), until it is finished; returns the last result and
    every (waiting_rung, waiting_for) asked for."""
    known: dict[str, list[float]] = {m: [] for m in order}
    asked: list[tuple[int, tuple[str, ...]]] = []
    for _ in range(64):
        result = successive_halving(
            known,
            cost,
            top_k_order=order,
            max_epochs=max_epochs,
            eta=eta,
            budget=budget,
            min_epochs=min_epochs,
            partial=True,
        )
        if result.finished:
            assert result.waiting_rung is None and result.to_dict()["finished"] is True
            return result, asked
        rung = result.waiting_rung
        assert rung is not None and result.pick is None and result.runner_up is None
        assert not result.to_dict()["finished"]
        assert not asked or rung > asked[-1][0]  # rungs only move forward
        end = result.schedule[rung - 1]
        for m in result.waiting_for:
            assert len(known[m]) < end  # never asked for what is known already
            assert result.records[m].reason == f"training in rung {rung}"
            # Like a trainer, a curve stops at the epoch that diverged.
            grown = list(full[m][:end])
            known[m] = grown[: next((i + 1 for i, v in enumerate(grown) if math.isnan(v)), end)]
        asked.append((rung, result.waiting_for))
    raise AssertionError("partial halving never finished")


def test_partial_by_hand():
    first = successive_halving({m: [] for m in ORDER}, COST, top_k_order=ORDER, max_epochs=4, partial=True)
    assert (first.waiting_for, first.waiting_rung, first.cost) == (tuple(ORDER), 1, 0.0)
    assert not first.finished and first.pick is None
    assert [r.epochs for r in first.records.values()] == [0, 0, 0, 0]
    assert all(row["val_accuracy"] is None for row in first.to_dict()["records"])
    # Rung 1 known: b (.6) and a (.5) go on to epoch 2; 1+2+3+4 = 10 spent so far.
    after_one = successive_halving(
        {m: c[:1] for m, c in CURVES.items()}, COST, top_k_order=ORDER, max_epochs=4, partial=True
    )
    assert (after_one.waiting_for, after_one.waiting_rung, after_one.cost) == (("b", "a"), 2, 10.0)
    assert after_one.records["c"].reason == "eliminated at rung 1 (val acc 0.4 < cutoff 0.5)"
    result, asked = drive(CURVES, COST, ORDER, 4)
    assert asked == [(1, ("a", "b", "c", "d")), (2, ("b", "a")), (3, ("b",))]
    assert (result.pick, result.runner_up, result.cost) == ("b", "a", 17.0)
    assert result.complete


def test_partial_counts_a_short_diverged_curve_as_done():
    # rung 2: b (.65) beats a (.6); in rung 3 (epochs 3-4) b diverges in epoch 3: its curve
    # stops there, and nothing more is waited for from it.
    known = {"a": [0.5, 0.6], "b": [0.6, 0.65, math.nan], "c": [0.4], "d": [0.3]}
    result = successive_halving(known, COST, top_k_order=ORDER, max_epochs=4, partial=True)
    assert result.finished and result.waiting_rung is None
    assert result.records["b"].reason == "diverged (NaN)" and result.records["b"].rung == 3
    assert (result.pick, result.runner_up, result.cost) == (None, "a", 17.0)  # 10 + 3 + b 2 x 2
    assert "last model" in (result.note or "")


def test_a_model_diverged_inside_a_rung_has_no_val_accuracy():
    curves = {"a": [0.5, 0.6, 0.7, 0.8], "b": [0.6, 0.7, math.nan, 0.9]}
    result = successive_halving(curves, {"a": 1.0, "b": 1.0}, top_k_order=["a", "b"], max_epochs=4)
    assert result.records["b"].reason == "diverged (NaN)" and result.records["b"].epochs == 4
    assert math.isnan(result.records["b"].val_accuracy)


def test_short_curves_wait_in_partial_mode_and_are_refused_in_full_mode():
    short = {m: c[:2] for m, c in CURVES.items()}
    waiting = successive_halving(short, COST, top_k_order=ORDER, max_epochs=4, partial=True)
    assert (waiting.waiting_for, waiting.waiting_rung) == (("b",), 3)
    with pytest.raises(InvalidInputError) as err:
        successive_halving(short, COST, top_k_order=ORDER, max_epochs=4)
    assert err.value.field == "curves"


@st.composite
def nan_shortlists(draw):
    n = draw(st.integers(1, 7))
    max_epochs = draw(st.integers(1, 10))
    models = [f"m{i}" for i in range(n)]
    # 0..20 -> accuracies on a grid (ties happen); 21, 22 -> NaN (divergence)
    grid = st.integers(0, 22).map(lambda i: i / 20 if i <= 20 else math.nan)
    curves = {}
    for m in models:
        curve = draw(st.lists(grid, min_size=max_epochs, max_size=max_epochs + draw(st.integers(0, 2))))
        first_nan = next((i for i, v in enumerate(curve) if math.isnan(v)), len(curve))
        curves[m] = curve[:first_nan] + [math.nan] * (len(curve) - first_nan)  # diverged for good
    cost = {m: draw(st.integers(1, 9)) / 2 for m in models}
    order = list(draw(st.permutations(models)))
    eta = draw(st.integers(2, 4))
    min_epochs = draw(st.integers(1, max_epochs))
    return curves, cost, order, max_epochs, eta, min_epochs


@settings(max_examples=300, deadline=None)
@given(nan_shortlists(), st.one_of(st.none(), st.floats(0.0, 1.5)))
def test_partial_steps_end_where_one_full_call_does(case, fraction):
    curves, cost, order, max_epochs, eta, min_epochs = case
    budget = None
    if fraction is not None:
        lowest = minimum_budget(cost, order, min_epochs=min_epochs)
        budget = lowest + fraction * (
            estimated_cost(cost, order, max_epochs, eta, min_epochs=min_epochs) - lowest
        )
    kwargs = {"top_k_order": order, "max_epochs": max_epochs, "eta": eta, "min_epochs": min_epochs}
    full = successive_halving(curves, cost, budget=budget, **kwargs)
    stepped, asked = drive(curves, cost, order, max_epochs, eta, budget, min_epochs)
    assert (stepped.pick, stepped.runner_up, stepped.cost) == (full.pick, full.runner_up, full.cost)
    assert stepped.to_dict() == full.to_dict()  # records (NaN as None), note, budget, schedule
    assert asked and asked[0] == (1, tuple(order)) and len(asked) <= len(full.schedule)
    # Only what the full run trains (and charges) is asked for: rung r of every model that
    # got as far as rung r.
    for rung, models in asked:
        assert set(models) == {m for m, r in full.records.items() if r.rung >= rung}


# --------------------------------------------------------------------------------------------
# paired_difference


def test_paired_difference_by_hand():
    a = np.array([1, 1, 1, 0, 1, 0, 1, 1])  # 6/8
    b = np.array([1, 0, 1, 0, 0, 0, 1, 0])  # 3/8
    diff, low, high = paired_difference(a, b)
    assert diff == pytest.approx(3 / 8)
    assert low <= diff <= high
    back, low_b, high_b = paired_difference(b, a)  # the same resampled rows, negated
    assert back == pytest.approx(-3 / 8)
    assert (low_b, high_b) == pytest.approx((-high, -low))
    assert paired_difference(a.astype(bool), b.astype(bool)) == (diff, low, high)


def test_paired_difference_of_identical_rows_is_zero():
    rows = np.array([1, 0, 0, 1, 1, 0, 1])
    assert paired_difference(rows, rows.copy()) == (0.0, 0.0, 0.0)


def test_paired_difference_is_paired():
    # a gets 5 more rows right than b and nothing else differs: 0.55 vs 0.50 over 100 rows,
    # which two independent intervals could not separate; paired, the interval is above 0.
    b = np.array([1] * 50 + [0] * 50)
    a = b.copy()
    a[50:55] = 1
    diff, low, high = paired_difference(a, b)
    assert diff == pytest.approx(0.05)
    assert 0 < low <= 0.05 <= high <= 0.1


def test_a_clearly_better_model_has_an_interval_above_zero():
    rng = np.random.default_rng(3)
    a = (rng.random(200) < 0.9).astype(int)
    b = (rng.random(200) < 0.4).astype(int)
    diff, low, high = paired_difference(a, b)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert 0 < low < diff < high


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1, 0, 1], [1, 0]),
        ([], []),
        ([[1, 0]], [[1, 0]]),
        ([1, 2], [1, 0]),
        ([1, 0], [0.5, 0]),
        ([1, 0], [-1, 0]),
    ],
)
def test_paired_difference_refuses_bad_rows(a, b):
    with pytest.raises(InvalidInputError) as err:
        paired_difference(np.array(a), np.array(b))
    assert err.value.field == "correct_n"


def test_paired_difference_refuses_a_bad_level():
    with pytest.raises(InvalidInputError) as err:
        paired_difference(np.array([1, 0]), np.array([0, 0]), level=1.5)
    assert err.value.field == "level"


# --------------------------------------------------------------------------------------------
# ConfirmRequest.from_dict


def test_request_defaults():
    for empty in (None, {}, {"top_k": None}):
        request = ConfirmRequest.from_dict(empty)
        assert (request.top_k, request.budget, request.budget_unit) == (5, None, "images")
        assert (request.loss, request.eta, request.seed) == ("ce", 2, 0)
        train = request.train_settings()
        assert (train.epochs, train.val_per_class, train.train_per_class) == (6, 20, 50)


def test_request_converts_strings():
    request = ConfirmRequest.from_dict(
        {"top_k": "3", "budget": "1500", "eta": "3", "seed": "7", "loss": "powergrad", "alpha": "0.5"}
    )
    assert request.top_k == 3 and isinstance(request.top_k, int)
    assert request.budget == 1500.0 and request.eta == 3 and request.seed == 7
    assert request.alpha == 0.5 and request.loss == "powergrad"
    assert ConfirmRequest.from_dict({"top_k": 4.0}).top_k == 4
    assert ConfirmRequest.from_dict({"budget": None}).budget is None


def test_request_settings_merge_with_the_defaults():
    request = ConfirmRequest.from_dict({"settings": {"epochs": "3"}})
    train = request.train_settings()
    assert train.epochs == 3
    assert train.val_per_class == DEFAULT_SETTINGS["val_per_class"] == 20
    assert train.train_per_class == DEFAULT_SETTINGS["train_per_class"] == 50
    again = ConfirmRequest.from_dict(request.to_dict())
    assert again.to_dict() == request.to_dict()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"top_k": "2.5"}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_k": "three"}, "top_k"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 65}, "top_k"),
        ({"top_k": True}, "top_k"),
        ({"budget": True}, "budget"),
        ({"eta": False}, "eta"),
        ({"seed": True}, "seed"),
        ({"alpha": True}, "alpha"),
        ({"budget": 0}, "budget"),
        ({"budget": -10}, "budget"),
        ({"budget": "inf"}, "budget"),
        ({"budget": "nan"}, "budget"),
        ({"budget": "lots"}, "budget"),
        ({"budget": [100]}, "budget"),
        ({"budget_unit": "gpu-hours"}, "budget_unit"),
        ({"budget_unit": 3}, "budget_unit"),
        ({"loss": "mse"}, "loss"),
        ({"eta": 1}, "eta"),
        ({"eta": 9}, "eta"),
        ({"eta": "2.5"}, "eta"),
        ({"seed": -1}, "seed"),
        ({"settings": "fast"}, "settings"),
        ({"settings": {"epochs": 0}}, "settings"),
        ({"settings": {"warp": 9}}, "settings"),
    ],
)
def test_request_refuses_bad_values_naming_the_field(values, field):
    with pytest.raises(InvalidInputError) as err:
        ConfirmRequest.from_dict(values)
    assert err.value.field == field


def test_request_refuses_an_unknown_option_by_name():
    with pytest.raises(InvalidInputError) as err:
        ConfirmRequest.from_dict({"top_k": 3, "topk": 3})
    assert err.value.field == "topk"
    assert "topk" in str(err.value) and "top_k" in str(err.value)  # the known ones listed


def test_request_refuses_train_per_class_below_two():
    # the trainer's one rule: every class needs 2 fine-tune rows at least (TrainSettings)
    with pytest.raises(InvalidInputError) as err:
        ConfirmRequest.from_dict({"settings": {"train_per_class": 0}})
    assert err.value.field == "settings" and "train_per_class" in str(err.value)


def test_request_refuses_a_fractional_row_count():
    with pytest.raises(InvalidInputError) as err:
        ConfirmRequest.from_dict({"settings": {"val_per_class": 2.5}})
    assert err.value.field == "settings"


# --------------------------------------------------------------------------------------------
# confirm_split and plan_confirmation

# Three classes of 10, 12 and 8 rows, shuffled so that a class is no block of rows.
LABELS = np.random.default_rng(5).permutation(np.repeat([0, 1, 2], [10, 12, 8]))


def test_confirm_split_is_stratified_and_disjoint():
    split = confirm_split(LABELS, val_per_class=3, train_per_class=4, seed=0)
    assert np.bincount(LABELS[split.val]).tolist() == [3, 3, 3]
    assert np.bincount(LABELS[split.train]).tolist() == [4, 4, 4]
    assert not set(split.train.tolist()) & set(split.val.tolist())
    assert split.test.size == 0
    assert split.train.tolist() == sorted(split.train.tolist())
    assert split.val.tolist() == sorted(split.val.tolist())
    same = confirm_split(LABELS, val_per_class=3, train_per_class=4, seed=0)
    assert same.val.tolist() == split.val.tolist() and same.train.tolist() == split.train.tolist()
    other = confirm_split(LABELS, val_per_class=3, train_per_class=4, seed=1)
    assert other.val.tolist() != split.val.tolist()


@pytest.mark.parametrize("train_per_class", [0, -1, 100])
def test_confirm_split_all_the_rest(train_per_class):
    split = confirm_split(LABELS, val_per_class=3, train_per_class=train_per_class, seed=0)
    assert np.bincount(LABELS[split.train]).tolist() == [7, 9, 5]
    assert sorted([*split.train.tolist(), *split.val.tolist()]) == list(range(30))


def test_confirm_split_refuses_a_class_too_small():
    labels = np.array([0] * 5 + [7] * 3)
    with pytest.raises(InvalidInputError) as err:
        confirm_split(labels, val_per_class=3, train_per_class=2, seed=0)
    assert err.value.field == "dataset" and "class 7" in str(err.value)
    split = confirm_split(labels, val_per_class=2, train_per_class=2, seed=0)  # 2 val + 1 to train
    assert np.bincount(labels[split.train], minlength=8)[[0, 7]].tolist() == [2, 1]


def request(**values: Any) -> ConfirmRequest:
    return ConfirmRequest.from_dict(
        {"settings": {"epochs": 4, "train_per_class": 4, "val_per_class": 3}} | values
    )


def test_plan_by_hand():
    # 12 fine-tune + 9 validation rows: one epoch of a model passes 21 images.
    plan = plan_confirmation(["a", "b", "c", "d"], LABELS, request(top_k=3))
    assert plan.shortlist == ["a", "b", "c"] and plan.top_k_note is None
    assert plan.schedule == [1, 2, 4]
    assert (len(plan.split.train), len(plan.split.val)) == (12, 9)
    assert plan.epoch_cost == {"a": 21.0, "b": 21.0, "c": 21.0}
    assert plan.minimum_budget == 3 * 21.0
    # rungs [1, 2, 4]: 3 models x 1 epoch + 2 x 1 + 1 x 2 = 7 epochs of 21 images.
    assert plan.estimated_cost == 7 * 21.0
    assert plan.epoch_seconds == {"a": None, "b": None, "c": None}
    assert plan.to_dict()["estimated_seconds"] is None
    assert "63" in plan.summary() and "147" in plan.summary()


def test_plan_clamps_top_k_with_a_note():
    plan = plan_confirmation(["a", "b"], LABELS, request(top_k=10))
    assert plan.shortlist == ["a", "b"]
    assert plan.top_k_note is not None and "10" in plan.top_k_note and "2" in plan.top_k_note
    assert plan.minimum_budget == 2 * 21.0
    with pytest.raises(InvalidInputError) as err:
        plan_confirmation([], LABELS, request())
    assert err.value.field == "job"


def test_plan_refuses_a_budget_below_one_epoch_of_each():
    with pytest.raises(InvalidInputError) as err:
        plan_confirmation(["a", "b", "c", "d"], LABELS, request(top_k=3, budget=62))
    assert err.value.field == "budget" and "63" in str(err.value)
    plan = plan_confirmation(["a", "b", "c", "d"], LABELS, request(top_k=3, budget=63))
    assert plan.request.budget == 63.0


def test_plan_in_seconds_needs_every_speed():
    speeds = {"a": 10.0, "b": 20.0, "c": 5.0, "d": None}
    seconds = request(top_k=3, budget_unit="seconds")
    plan = plan_confirmation(["a", "b", "c", "d"], LABELS, seconds, images_per_second=speeds)
    # (3 x 12 training passes + 9 validation passes) / speed
    assert plan.epoch_cost == {"a": 4.5, "b": 2.25, "c": 9.0}
    assert plan.epoch_seconds == plan.epoch_cost
    assert plan.minimum_budget == pytest.approx(15.75)
    # worst case: rung 1 all three (15.75), rung 2 the two dearest (9 + 4.5), rung 3 2 x 9.
    assert plan.estimated_cost == pytest.approx(15.75 + 13.5 + 18.0)
    assert plan.to_dict()["estimated_seconds"] == pytest.approx(47.25)
    for missing in ({"a": 10.0, "b": 20.0}, {"a": 10.0, "b": 20.0, "c": 0.0}, {**speeds, "c": math.nan}):
        with pytest.raises(InvalidInputError) as err:
            plan_confirmation(["a", "b", "c", "d"], LABELS, seconds, images_per_second=missing)
        assert err.value.field == "budget_unit" and "none for c;" in str(err.value)
    # In images the speeds only inform the seconds estimate.
    images = plan_confirmation(["a", "b", "c"], LABELS, request(), images_per_second={"a": 10.0})
    assert images.epoch_cost == {"a": 21.0, "b": 21.0, "c": 21.0}
    assert images.epoch_seconds == {"a": 4.5, "b": None, "c": None}


def test_plan_counts_scored_rows_and_round_trips():
    plan = plan_confirmation(["a", "b", "c", "d"], LABELS, request(top_k=3))
    outside = sorted(set(range(30)) - set(plan.split.train.tolist()) - set(plan.split.val.tolist()))
    rows = [int(plan.split.train[0]), int(plan.split.train[5]), int(plan.split.val[2]), outside[0]]
    scored = plan_confirmation(
        ["a", "b", "c", "d"], LABELS, request(top_k=3), scored_rows=rows, images_per_second={"a": 1.0}
    )
    assert scored.scored_rows == {"scored": 4, "in_fine_tune": 2, "in_validation": 1}
    payload = json.loads(json.dumps(scored.to_dict()))
    back = plan_from_dict(payload)
    assert isinstance(back, ConfirmPlan)
    assert back.shortlist == ["a", "b", "c"] and back.ranking_order == ["a", "b", "c", "d"]
    assert back.split.train.tolist() == scored.split.train.tolist()
    assert back.split.val.tolist() == scored.split.val.tolist()
    assert back.schedule == [1, 2, 4]
    assert back.epoch_cost == scored.epoch_cost and back.epoch_seconds == scored.epoch_seconds
    assert (back.minimum_budget, back.estimated_cost) == (63.0, 147.0)
    assert back.scored_rows == scored.scored_rows
    assert back.request.to_dict() == scored.request.to_dict()
    assert back.to_dict() == scored.to_dict()


# --------------------------------------------------------------------------------------------
# decide and answer on hand-made units (no training)

SCHEDULE = [1, 2, 4]
ROWS = 10  # 2 classes x 5 validation rows


def stage_plan(ranking: list[str], **values: Any) -> ConfirmPlan:
    settings = {"epochs": 4, "train_per_class": 2, "val_per_class": 5}
    plan = plan_confirmation(
        ranking, np.repeat([0, 1], 8), ConfirmRequest.from_dict({"settings": settings} | values)
    )
    assert plan.schedule == SCHEDULE and len(plan.split.val) == ROWS
    assert plan.epoch_cost == dict.fromkeys(plan.shortlist, 14.0)  # 4 fine-tune + 10 validation
    return plan


def unit(model: str, rung: int, accs: list[float], correct: list[int], seconds: float) -> UnitResult:
    begin, end = (SCHEDULE[rung - 2] if rung > 1 else 0), SCHEDULE[rung - 1]
    assert len(accs) == end - begin and len(correct) == ROWS and sum(correct) / ROWS == accs[-1]
    history = [
        {"epoch": begin + i, "loss": 1.0 / (begin + i), "val_accuracy": acc}
        for i, acc in enumerate(accs, start=1)
    ]
    return UnitResult(
        model=model, rung=rung, end_epoch=end, history=history, val_correct=correct, seconds=seconds
    )


def diverged_unit(model: str, rung: int, epoch: int) -> UnitResult:
    message = f"training diverged (loss nan) at epoch {epoch}; lower the learning rate"
    history = [{"epoch": epoch, "loss": None, "val_accuracy": None}]
    return UnitResult(model=model, rung=rung, end_epoch=SCHEDULE[rung - 1], history=history, diverged=message)


A1 = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # .5
B1 = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]  # .7
C1 = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # .3
A2 = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]  # .6
B2 = [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]  # .8; B2 - A2 per row: -1 0 0 0 0 0 1 1 1 0 -> +0.2
B3 = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]  # .9

# By hand, rungs [1, 2, 4], eta 2, ranking a, b, c:
# rung 1: a .5, b .7, c .3 -> keep ceil(3/2) = 2: b, a; c eliminated (.3 < cutoff .5).
# rung 2: a .6, b .8 -> keep b; a eliminated (.6 < .8), the runner-up. rung 3: b to epoch 4.
# cost: (3 + 2 + 1 x 2) epochs x 14 images = 98.
UNITS = {
    ("a", 1): unit("a", 1, [0.5], A1, 1.0),
    ("b", 1): unit("b", 1, [0.7], B1, 2.0),
    ("c", 1): unit("c", 1, [0.3], C1, 4.0),
    ("a", 2): unit("a", 2, [0.6], A2, 1.0),
    ("b", 2): unit("b", 2, [0.8], B2, 2.0),
    ("b", 3): unit("b", 3, [0.85, 0.9], B3, 2.0),
}


def play(plan: ConfirmPlan, available: dict[tuple[str, int], UnitResult]):
    """decide() after every batch of units, handing it the units it asks for."""
    units: list[UnitResult] = []
    asked: list[tuple[int, tuple[str, ...]]] = []
    for _ in range(10):
        result = decide(plan, units)
        if result.finished:
            return result, units, asked
        assert result.waiting_rung is not None
        asked.append((result.waiting_rung, result.waiting_for))
        units += [available[(m, result.waiting_rung)] for m in result.waiting_for]
    raise AssertionError("decide never finished")


def test_decide_and_answer_by_hand():
    plan = stage_plan(["a", "b", "c"])
    result, units, asked = play(plan, UNITS)
    assert asked == [(1, ("a", "b", "c")), (2, ("b", "a")), (3, ("b",))]
    assert curves(plan, units) == {"a": [0.5, 0.6], "b": [0.7, 0.8, 0.85, 0.9], "c": [0.3]}
    assert (result.pick, result.runner_up, result.cost) == ("b", "a", 98.0)
    out = answer(plan, result, units)
    assert (out["pick"], out["runner_up"]) == ("b", "a")
    assert (out["pick_val_accuracy"], out["runner_up_val_accuracy"]) == (0.9, 0.6)
    low, high = out["pick_interval"]
    assert 0 <= low <= 0.9 <= high <= 1
    models = {row["model"]: row for row in out["models"]}
    assert [row["model"] for row in out["models"]] == ["b", "a", "c"]
    assert {m: row["confirmed_position"] for m, row in models.items()} == {"b": 1, "a": 2, "c": 3}
    assert {m: row["ranking_position"] for m, row in models.items()} == {"a": 1, "b": 2, "c": 3}
    assert {m: [h["epoch"] for h in row["curve"]] for m, row in models.items()} == {
        "a": [1, 2],
        "b": [1, 2, 3, 4],
        "c": [1],
    }
    assert models["b"]["reason"] == "kept"
    assert models["a"]["reason"] == "eliminated at rung 2 (val acc 0.6 < cutoff 0.8)"
    assert models["c"]["reason"] == "eliminated at rung 1 (val acc 0.3 < cutoff 0.5)"
    assert {m: (row["epochs"], row["rung"], row["cost"]) for m, row in models.items()} == {
        "a": (2, 2, 28.0),
        "b": (4, 3, 56.0),
        "c": (1, 1, 14.0),
    }
    assert {m: row["seconds"] for m, row in models.items()} == {"a": 2.0, "b": 6.0, "c": 4.0}
    assert out["seconds"] == 12.0 and out["cost"] == 98.0 and out["unit"] == "images"
    # The pick against the runner-up where they were last compared: rung 2, B2 - A2 = +0.2.
    difference = out["difference"]
    assert difference["points"] == pytest.approx(20.0)
    assert (difference["rung"], difference["epoch"]) == (2, 2)
    assert difference["ci95"][0] <= 20.0 <= difference["ci95"][1]
    assert difference["distinguishable"] == (difference["ci95"][0] > 0)
    assert "rung 2, epoch 2" in out["verdict"] and "+20.0 points" in out["verdict"]
    assert out["ranking_top1"] == "a" and out["agrees_with_ranking"] is False
    change = out["order_change"]
    assert "picks b, ranked #2" in change and "top-1 a eliminated at rung 2" in change
    assert "b #2 -> #1" in change and "a #1 -> #2" in change
    assert out["validation_rows"] == ROWS and out["complete"] and out["note"] is None


def test_answer_agrees_with_a_ranking_that_put_the_pick_first():
    plan = stage_plan(["b", "a", "c"])
    result, units, asked = play(plan, UNITS)
    assert asked == [(1, ("b", "a", "c")), (2, ("b", "a")), (3, ("b",))]
    out = answer(plan, result, units)
    assert out["agrees_with_ranking"] is True
    assert (
        out["order_change"] == "the confirmation agrees with the ranking's top-1, b; the order is unchanged"
    )


def test_a_failed_unit_takes_its_model_out_and_the_others_go_on():
    failed = UnitResult(model="a", rung=2, end_epoch=2, error="RuntimeError: boom", seconds=0.5)
    plan = stage_plan(["a", "b", "c"])
    result, units, asked = play(plan, {**UNITS, ("a", 2): failed})
    assert asked == [(1, ("a", "b", "c")), (2, ("b", "a")), (3, ("b",))]
    assert curves(plan, units)["a"] == [0.5, None]
    # a leaves at rung 2 without a comparison: the runner-up stays c, eliminated at rung 1.
    assert (result.pick, result.runner_up, result.cost) == ("b", "c", 98.0)
    out = answer(plan, result, units)
    models = {row["model"]: row for row in out["models"]}
    assert [row["model"] for row in out["models"]] == ["b", "c", "a"]
    assert models["a"]["reason"] == "failed: RuntimeError: boom"
    assert models["a"]["val_accuracy"] is None
    assert models["b"]["reason"] == "kept" and models["b"]["epochs"] == 4
    # B1 - C1 per row: 1 1 1 1 1 1 1 -1 -1 -1 -> +0.4 at rung 1.
    assert out["difference"]["points"] == pytest.approx(40.0)
    assert (out["difference"]["rung"], out["difference"]["epoch"]) == (1, 1)


def test_a_diverged_model_is_named_with_its_reason():
    plan = stage_plan(["a", "b", "c"])
    available = {**UNITS, ("c", 1): diverged_unit("c", 1, 1)}
    result, units, asked = play(plan, available)
    # rung 1: c diverged; of a, b keep ceil(2/2) = 1: b; a eliminated, the runner-up.
    assert asked == [(1, ("a", "b", "c")), (2, ("b",)), (3, ("b",))]
    assert (result.pick, result.runner_up, result.cost) == ("b", "a", 3 * 14.0 + 14.0 + 28.0)
    out = answer(plan, result, units)
    models = {row["model"]: row for row in out["models"]}
    assert [row["model"] for row in out["models"]] == ["b", "a", "c"]
    assert (
        models["c"]["reason"] == "diverged: training diverged (loss nan) at epoch 1; lower the learning rate"
    )
    assert models["c"]["val_accuracy"] is None and models["c"]["curve"] == [
        {"epoch": 1, "loss": None, "val_accuracy": None}
    ]
    assert models["a"]["reason"] == "eliminated at rung 1 (val acc 0.5 < cutoff 0.7)"
    # B1 - A1 per row: 0 0 0 0 0 1 1 0 0 0 -> +0.2 at rung 1.
    assert out["difference"]["points"] == pytest.approx(20.0) and out["difference"]["rung"] == 1


def test_every_model_diverging_gives_no_pick():
    plan = stage_plan(["a", "b", "c"])
    available = {(m, 1): diverged_unit(m, 1, 1) for m in "abc"}
    result, units, asked = play(plan, available)
    assert asked == [(1, ("a", "b", "c"))]
    out = answer(plan, result, units)
    assert out["pick"] is None and out["runner_up"] is None and out["difference"] is None
    assert out["pick_val_accuracy"] is None and out["pick_interval"] is None
    assert "every shortlisted model diverged" in out["note"] and out["verdict"] == out["note"]
    assert out["order_change"].startswith("no pick")
    assert all(row["reason"].startswith("diverged: training diverged") for row in out["models"])
    assert [row["model"] for row in out["models"]] == ["a", "b", "c"]  # ranking order kept
    assert out["cost"] == 3 * 14.0


def test_a_budget_stops_after_the_first_rung():
    plan = stage_plan(["a", "b", "c"], budget=42)  # exactly one epoch of each
    result, units, asked = play(plan, UNITS)
    assert asked == [(1, ("a", "b", "c"))]
    out = answer(plan, result, units)
    assert (out["pick"], out["runner_up"], out["cost"]) == ("b", "a", 42.0)
    assert out["stopped_by_budget"] and not out["complete"]
    assert "fine-tune b on to epoch 4" in out["note"]
    models = {row["model"]: row for row in out["models"]}
    assert models["a"]["reason"] == "budget spent"
    assert [row["model"] for row in out["models"]] == ["b", "a", "c"]
    assert out["difference"]["points"] == pytest.approx(20.0)  # B1 - A1 at rung 1


def test_unit_result_to_dict_holds_every_field():
    one = UNITS[("b", 3)]
    assert UnitResult(**json.loads(json.dumps(one.to_dict()))) == one


# --------------------------------------------------------------------------------------------
# One small real confirmation: digits, two random-init models, 2 epochs (rungs [1, 2]).

MODELS = ["resnet10t@random", "test_resnet@random"]
TINY = {"epochs": 2, "train_per_class": 5, "val_per_class": 3}


@pytest.fixture(scope="module")
def digits():
    from zoorank.data import load_dataset

    return load_dataset("builtin:digits")


@pytest.fixture(scope="module")
def specs():
    from zoorank.zoo import parse_model_ref

    return {ref: parse_model_ref(ref) for ref in MODELS}


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_run_confirmation_trains_rung_by_rung_with_checkpoints(digits, specs, tmp_path):
    plan = plan_confirmation(MODELS, digits.labels, ConfirmRequest.from_dict({"settings": TINY}))
    # 10 classes: 50 fine-tune + 30 validation rows; rung 1 both (2 x 80), rung 2 the pick (80).
    assert (len(plan.split.train), len(plan.split.val), plan.schedule) == (50, 30, [1, 2])
    calls: list[tuple[str, int, int, int]] = []
    out = run_confirmation(
        plan, digits, specs, checkpoints=tmp_path, progress=lambda *call: calls.append(call)
    )
    pick, runner_up = out["pick"], out["runner_up"]
    assert {pick, runner_up} == set(MODELS) and out["cost"] == 240.0 and out["complete"]
    assert sorted(calls) == sorted([(MODELS[0], 1, 1, 1), (MODELS[1], 1, 1, 1), (pick, 2, 2, 2)])
    models = {row["model"]: row for row in out["models"]}
    assert [h["epoch"] for h in models[pick]["curve"]] == [1, 2]
    assert [h["epoch"] for h in models[runner_up]["curve"]] == [1]
    assert out["pick_val_accuracy"] == models[pick]["curve"][-1]["val_accuracy"]
    assert models[runner_up]["reason"].startswith("eliminated at rung 1")
    assert not list(tmp_path.rglob("*.part"))
    assert files(checkpoint_dir(tmp_path, pick)) == ["rung-1.pt", "rung-2.pt"]
    assert files(checkpoint_dir(tmp_path, runner_up)) == ["rung-1.pt"]
    state = torch.load(checkpoint_dir(tmp_path, pick) / "rung-2.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_a_rung_resumed_from_its_checkpoint_trains_as_one_straight_run(digits, specs, tmp_path):
    from zoorank.groundtruth.training import FineTuneRun
    from zoorank.zoo import create_model

    spec = specs[MODELS[0]]
    plan = plan_confirmation(MODELS, digits.labels, ConfirmRequest.from_dict({"settings": TINY}))
    train = plan.request.train_settings()
    folder = checkpoint_dir(tmp_path, spec.name)
    with pytest.raises(FileNotFoundError):  # rung 2 needs rung 1's checkpoint
        train_unit(spec, digits, plan.split, train, schedule=[1, 2], rung=2, checkpoints=folder)
    first = train_unit(spec, digits, plan.split, train, schedule=[1, 2], rung=1, checkpoints=folder)
    second = train_unit(spec, digits, plan.split, train, schedule=[1, 2], rung=2, checkpoints=folder)
    straight = FineTuneRun(create_model(spec), digits, plan.split, train, seed=0)
    for _ in range(2):
        straight.train_epoch()

    def keys(history):
        return [(h["epoch"], h["loss"], h["val_accuracy"]) for h in history]

    assert keys(first.history + second.history) == keys(straight.history)
    assert second.val_correct == [int(v) for v in straight.val_correct()]
    assert (first.end_epoch, second.end_epoch, second.diverged, second.error) == (1, 2, None, None)


def test_cancelling_a_rung_leaves_no_checkpoint_for_it(digits, specs, tmp_path):
    spec = specs[MODELS[1]]
    plan = plan_confirmation(MODELS, digits.labels, ConfirmRequest.from_dict({"settings": TINY}))
    train = plan.request.train_settings()
    folder = checkpoint_dir(tmp_path, spec.name)

    def cancel() -> None:
        raise Cancelled("job cancelled")

    with pytest.raises(Cancelled):
        train_unit(
            spec, digits, plan.split, train, schedule=[1, 2], rung=1, checkpoints=folder, should_stop=cancel
        )
    assert files(tmp_path) == []
    train_unit(spec, digits, plan.split, train, schedule=[1, 2], rung=1, checkpoints=folder)
    before = (folder / "rung-1.pt").read_bytes()
    with pytest.raises(Cancelled):
        train_unit(
            spec, digits, plan.split, train, schedule=[1, 2], rung=2, checkpoints=folder, should_stop=cancel
        )
    assert files(folder) == ["rung-1.pt"] and (folder / "rung-1.pt").read_bytes() == before
    # run_confirmation passes a cancellation on instead of failing the model.
    with pytest.raises(Cancelled):
        run_confirmation(plan, digits, specs, checkpoints=tmp_path / "run", should_stop=cancel)
    assert files(tmp_path / "run") == []


def test_a_huge_learning_rate_diverges(digits, specs, tmp_path):
    # One step per epoch (50 rows, batch 32): epoch 1's loss comes before any update, so both
    # models pass rung 1; the one kept takes the 1e30 step's weights into epoch 2 and diverges.
    request = ConfirmRequest.from_dict({"settings": {**TINY, "lr": 1e30}})
    plan = plan_confirmation(MODELS, digits.labels, request)
    out = run_confirmation(plan, digits, specs, checkpoints=tmp_path)
    models = {row["model"]: row for row in out["models"]}
    gone = [m for m, row in models.items() if row["reason"].startswith("diverged: ")]
    assert len(gone) == 1
    (bad,) = gone
    (other,) = set(MODELS) - {bad}
    assert "training diverged (loss" in models[bad]["reason"] and "at epoch 2" in models[bad]["reason"]
    assert models[bad]["curve"][-1] == {"epoch": 2, "loss": None, "val_accuracy": None}
    assert models[bad]["val_accuracy"] is None
    assert models[other]["reason"].startswith("eliminated at rung 1")
    assert out["pick"] is None and out["runner_up"] == other
    assert "diverged" in out["note"] and out["verdict"] == out["note"]
    assert files(checkpoint_dir(tmp_path, bad)) == ["rung-1.pt"]  # nothing for the diverged rung
