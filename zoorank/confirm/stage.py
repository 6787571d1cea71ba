"""A confirmation run and its answer, over the units trained so far.

:func:`decide` replays :func:`~zoorank.confirm.halving.successive_halving` on the curves the
finished units give (``partial=True``): it says which models to train to which rung next, or
that the run is over. The service calls it after every unit (one Celery task per (model, rung));
:func:`run_confirmation` calls it in a loop in-process (``zoorank rank --confirm``). Both get
the same decisions and the same :func:`answer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zoorank.confirm.halving import (
    DIVERGED,
    HalvingResult,
    accuracy_interval,
    paired_difference,
    successive_halving,
)
from zoorank.confirm.plan import ConfirmPlan
from zoorank.confirm.units import UnitResult, checkpoint_dir, train_unit
from zoorank.data import ImageDataset
from zoorank.zoo import ModelSpec

ProgressFn = Callable[[str, int, int, int], None]  # model, rung, epoch, end epoch


def _by_model(units: Iterable[UnitResult]) -> dict[str, list[UnitResult]]:
    out: dict[str, list[UnitResult]] = {}
    for unit in sorted(units, key=lambda u: u.rung):
        out.setdefault(unit.model, []).append(unit)
    return out


def curves(plan: ConfirmPlan, units: Iterable[UnitResult]) -> dict[str, list[float | None]]:
    """Each shortlisted model's validation accuracy after every epoch trained so far (None
    from the epoch it diverged or its unit failed)."""
    grouped = _by_model(units)
    out: dict[str, list[float | None]] = {}
    for m in plan.shortlist:
        curve: list[float | None] = []
        for unit in grouped.get(m, []):
            curve += [h.get("val_accuracy") for h in unit.history]
            if unit.error is not None:
                curve.append(None)
                break
            if unit.diverged is not None:  # its history ends with the epoch that diverged
                break
        out[m] = curve
    return out


def decide(plan: ConfirmPlan, units: Iterable[UnitResult]) -> HalvingResult:
    """Successive halving of the plan's shortlist on the finished ``units``: finished, or the
    models to train next (``waiting_for``) and their rung (``waiting_rung``)."""
    return successive_halving(
        curves(plan, units),
        plan.epoch_cost,
        top_k_order=plan.shortlist,
        max_epochs=plan.schedule[-1],
        eta=plan.request.eta,
        budget=plan.request.budget,
        partial=True,
    )


def _interval(correct: list[int] | None) -> list[float] | None:
    return list(accuracy_interval(np.asarray(correct))) if correct else None


def answer(plan: ConfirmPlan, result: HalvingResult, units: Iterable[UnitResult]) -> dict[str, Any]:
    """The confirmation's answer: the pick and the runner-up with 95 % intervals over the
    validation rows and whether they can be told apart, every model's learning curve with its
    rung and why it stopped, and how the confirmed order differs from the ranking."""
    grouped = _by_model(units)
    rank_of = {m: i + 1 for i, m in enumerate(plan.ranking_order)}

    def last(m: str) -> UnitResult | None:
        done = [u for u in grouped.get(m, []) if u.val_correct is not None]
        return done[-1] if done else None

    def reason(m: str) -> str:
        failed = next((u.error for u in grouped.get(m, []) if u.error), None)
        if failed:
            return f"failed: {failed}"
        if result.records[m].reason == DIVERGED:
            return next((f"diverged: {u.diverged}" for u in grouped.get(m, []) if u.diverged), DIVERGED)
        return result.records[m].reason

    def alive(m: str) -> bool:
        return not math.isnan(result.records[m].val_accuracy) and not reason(m).startswith(
            ("failed", "diverged")
        )

    confirmed = sorted(
        plan.shortlist,
        key=lambda m: (
            m != result.pick,
            not alive(m),
            -result.records[m].epochs,
            -(0.0 if math.isnan(result.records[m].val_accuracy) else result.records[m].val_accuracy),
            rank_of[m],
        ),
    )
    models = []
    for position, m in enumerate(confirmed, start=1):
        record = result.records[m]
        unit = last(m)
        models.append(
            {
                "model": m,
                "ranking_position": rank_of[m],
                "confirmed_position": position,
                "epochs": record.epochs,
                "rung": record.rung,
                "val_accuracy": None if math.isnan(record.val_accuracy) else record.val_accuracy,
                "val_interval": _interval(unit.val_correct if unit else None),
                "reason": reason(m),
                "cost": record.cost,
                "seconds": sum(u.seconds for u in grouped.get(m, [])),
                "curve": [h for u in grouped.get(m, []) for h in u.history],
            }
        )
    by_name = {row["model"]: row for row in models}
    out: dict[str, Any] = {
        "pick": result.pick,
        "runner_up": result.runner_up,
        "pick_val_accuracy": by_name[result.pick]["val_accuracy"] if result.pick else None,
        "pick_interval": by_name[result.pick]["val_interval"] if result.pick else None,
        "runner_up_val_accuracy": by_name[result.runner_up]["val_accuracy"] if result.runner_up else None,
        "runner_up_interval": by_name[result.runner_up]["val_interval"] if result.runner_up else None,
        "difference": None,
        "verdict": None,
        "validation_rows": len(plan.split.val),
        "ranking_top1": plan.ranking_order[0],
        "agrees_with_ranking": result.pick == plan.ranking_order[0],
        "order_change": _order_change(plan, result, models),
        "models": models,
        "cost": result.cost,
        "unit": plan.unit,
        "seconds": sum(row["seconds"] for row in models),
        "stopped_by_budget": result.stopped_by_budget,
        "complete": result.complete,
        "note": result.note,
        "top_k_note": plan.top_k_note,
        "rows": _rows_sentence(plan),
    }
    runner_unit = last(result.runner_up) if result.runner_up else None
    # Compared where the decision between them was made: the pick at the runner-up's last rung.
    pick_unit = (
        next((u for u in grouped.get(result.pick, []) if u.rung == runner_unit.rung), None)
        if result.pick and runner_unit
        else None
    )
    if pick_unit and runner_unit and pick_unit.val_correct and runner_unit.val_correct:
        diff, low, high = paired_difference(
            np.asarray(pick_unit.val_correct), np.asarray(runner_unit.val_correct)
        )
        apart = low > 0
        out["difference"] = {
            "points": 100 * diff,
            "ci95": [100 * low, 100 * high],
            "distinguishable": apart,
            "rung": runner_unit.rung,
            "epoch": runner_unit.end_epoch,
        }
        out["verdict"] = (
            f"When they were last compared (rung {runner_unit.rung}, epoch {runner_unit.end_epoch}),"
            f" {result.pick} led {result.runner_up} by {100 * diff:+.1f} points of validation accuracy"
            f" (95 % interval [{100 * low:+.1f}, {100 * high:+.1f}] over {len(plan.split.val)} rows, paired)"
            + (
                "."
                if apart
                else ": the two cannot be told apart on these rows, and either is a sound choice."
            )
        )
    elif result.pick is None:
        out["verdict"] = result.note or "no model was confirmed"
    else:
        out["verdict"] = f"{result.pick} is the only model left to compare."
    return out


def _order_change(plan: ConfirmPlan, result: HalvingResult, models: list[dict[str, Any]]) -> str:
    top = plan.ranking_order[0]
    if result.pick is None:
        return "no pick: the ranking's order stands unconfirmed"
    moved = [
        f"{row['model']} #{row['ranking_position']} -> #{row['confirmed_position']}"
        for row in models
        if row["ranking_position"] != row["confirmed_position"]
    ]
    head = (
        f"the confirmation agrees with the ranking's top-1, {top}"
        if result.pick == top
        else f"the confirmation picks {result.pick}, ranked #{models[0]['ranking_position']};"
        f" the ranking's top-1 {top} "
        + (
            f"{next(r['reason'] for r in models if r['model'] == top)}"
            if top in plan.shortlist
            else "was not shortlisted"
        )
    )
    return head + (f" (order: {', '.join(moved)})" if moved else "; the order is unchanged")


def _rows_sentence(plan: ConfirmPlan) -> str:
    text = (
        f"{len(plan.split.train)} fine-tune rows and {len(plan.split.val)} validation rows, stratified;"
        " validation rows are never trained on"
    )
    scored = plan.scored_rows
    if scored:
        text += (
            f". Of the ranking's {scored['scored']} scored rows, {scored['in_fine_tune']} are fine-tune"
            f" rows and {scored['in_validation']} validation rows (the scores read their labels; no"
            " model was trained on them)"
        )
    return text


def run_confirmation(
    plan: ConfirmPlan,
    dataset: ImageDataset,
    specs: Mapping[str, ModelSpec],
    *,
    checkpoints: Path,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The whole confirmation in this process, unit after unit (what the service spreads over
    tasks); returns :func:`answer`. A unit that raises (other than through ``should_stop``)
    takes its model out of the run with the reason."""
    from zoorank.errors import Cancelled

    settings = plan.request.train_settings()
    units: list[UnitResult] = []
    while True:
        result = decide(plan, units)
        if result.finished:
            return answer(plan, result, units)
        rung = result.waiting_rung
        assert rung is not None
        for m in result.waiting_for:
            end = plan.schedule[rung - 1]
            try:
                unit = train_unit(
                    specs[m],
                    dataset,
                    plan.split,
                    settings,
                    schedule=plan.schedule,
                    rung=rung,
                    checkpoints=checkpoint_dir(checkpoints, m),
                    loss=plan.request.loss,
                    alpha=plan.request.alpha,
                    seed=plan.request.seed,
                    should_stop=should_stop,
                    on_epoch=(lambda e, n, m=m, r=rung: progress(m, r, e, n)) if progress else None,  # type: ignore[misc]
                )
            except Cancelled:
                raise
            except Exception as exc:
                unit = UnitResult(model=m, rung=rung, end_epoch=end, error=f"{type(exc).__name__}: {exc}")
            units.append(unit)
