"""The plan of a confirmation, made before anything trains: the shortlist, the split into
fine-tune and validation rows, the rungs, each epoch's cost and the estimated total. A dry run
returns it; a budget below its minimum is refused with the minimum named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoorank.confirm.halving import clamp_top_k, estimated_cost, minimum_budget, rungs
from zoorank.confirm.request import ConfirmRequest
from zoorank.errors import InvalidInputError
from zoorank.groundtruth.training import Split

# A training step passes an image forward and backward, about three forward passes; what the
# estimate of seconds assumes until a rung has measured them.
TRAIN_PASS_FORWARDS = 3.0


def confirm_split(labels_n: np.ndarray, *, val_per_class: int, train_per_class: int, seed: int) -> Split:
    """Stratified: per class ``val_per_class`` validation rows (never trained on), then up to
    ``train_per_class`` fine-tune rows (``<= 0``: all the rest), drawn without replacement by
    ``seed``; no test rows. A class with fewer than ``val_per_class + 1`` rows is refused,
    naming it."""
    labels_n = np.asarray(labels_n)
    rng = np.random.default_rng(seed)
    val, train = [], []
    for cls in np.unique(labels_n):
        rows = rng.permutation(np.flatnonzero(labels_n == cls))
        if rows.size < val_per_class + 1:
            raise InvalidInputError(
                f"class {cls} has {rows.size} rows: a validation split of {val_per_class} per class and at"
                " least one row to fine-tune on needs"
                f" {val_per_class + 1}; lower settings.val_per_class or add images of class {cls}",
                field="dataset",
            )
        val.append(rows[:val_per_class])
        rest = rows[val_per_class:]
        train.append(rest if train_per_class <= 0 else rest[:train_per_class])
    return Split(
        train=np.sort(np.concatenate(train)),
        val=np.sort(np.concatenate(val)),
        test=np.zeros(0, dtype=np.int64),
    )


@dataclass
class ConfirmPlan:
    """Everything decided before training (see the module docstring). ``epoch_cost``: model ->
    one epoch in ``unit`` (the budget's); ``epoch_seconds``: model -> estimated seconds of one
    epoch (None where nothing measured the model's speed)."""

    request: ConfirmRequest
    shortlist: list[str]
    ranking_order: list[str]
    top_k_note: str | None
    schedule: list[int]
    split: Split
    epoch_cost: dict[str, float]
    epoch_seconds: dict[str, float | None]
    minimum_budget: float
    estimated_cost: float
    scored_rows: dict[str, int] | None

    @property
    def unit(self) -> str:
        return self.request.budget_unit

    def to_dict(self) -> dict[str, Any]:
        seconds = (
            estimated_cost(
                {m: s or 0.0 for m, s in self.epoch_seconds.items()},
                self.shortlist,
                self.schedule[-1],
                self.request.eta,
            )
            if all(s is not None for s in self.epoch_seconds.values())
            else None
        )
        return {
            "request": self.request.to_dict(),
            "shortlist": list(self.shortlist),
            "ranking_order": list(self.ranking_order),
            "top_k": len(self.shortlist),
            "top_k_note": self.top_k_note,
            "schedule": list(self.schedule),
            "eta": self.request.eta,
            "split": {
                "fine_tune_rows": len(self.split.train),
                "validation_rows": len(self.split.val),
                "fine_tune": [int(i) for i in self.split.train],
                "validation": [int(i) for i in self.split.val],
            },
            "scored_rows": self.scored_rows,
            "budget": self.request.budget,
            "unit": self.unit,
            "epoch_cost": dict(self.epoch_cost),
            "epoch_seconds": dict(self.epoch_seconds),
            "minimum_budget": self.minimum_budget,
            "estimated_cost": self.estimated_cost,
            "estimated_seconds": seconds,
        }

    def summary(self) -> str:
        """One line for a dry run."""
        budget = "no budget" if self.request.budget is None else f"budget {self.request.budget:g} {self.unit}"
        return (
            f"{len(self.shortlist)} models ({', '.join(self.shortlist)}), rungs ending at epochs"
            f" {self.schedule}, {len(self.split.train)} fine-tune and {len(self.split.val)} validation"
            f" rows; estimated cost {self.estimated_cost:,.0f} {self.unit} at most ({budget}; minimum"
            f" {self.minimum_budget:,.0f} {self.unit})"
        )


def ranking_order(ranking: Mapping[str, Any]) -> list[str]:
    """A ranking's models best first (``ranking["aggregate"]`` of :func:`zoorank.rank.summarise`),
    without those whose every score failed."""
    rows = sorted(ranking.get("aggregate") or [], key=lambda row: row["rank"])
    return [str(row["model"]) for row in rows if not row.get("failed")]


def plan_confirmation(
    ranking_order: Sequence[str],
    labels_n: np.ndarray,
    request: ConfirmRequest,
    *,
    images_per_second: Mapping[str, float | None] | None = None,
    scored_rows: Sequence[int] | None = None,
) -> ConfirmPlan:
    """The plan for confirming the top of ``ranking_order`` (best first; models that failed
    left out by the caller) on a dataset with labels ``labels_n``.

    ``images_per_second``: model -> forward passes per second measured by the ranking (the
    estimate of seconds assumes :data:`TRAIN_PASS_FORWARDS` per training image); a ``seconds``
    budget needs it for every shortlisted model. ``scored_rows``: the rows the ranking scored,
    to say how many of them fall in each part of the split.
    """
    request.validate()
    order = list(ranking_order)
    if not order:
        raise InvalidInputError("the ranking has no model to confirm (every model failed)", field="job")
    k, note = clamp_top_k(request.top_k, len(order))
    shortlist = order[:k]
    settings = request.train_settings()
    split = confirm_split(
        labels_n,
        val_per_class=settings.val_per_class,
        train_per_class=settings.train_per_class,
        seed=settings.split_seed,
    )
    schedule = rungs(settings.epochs, request.eta, 1)
    passes = float(len(split.train) + len(split.val))
    speeds = dict(images_per_second or {})
    seconds: dict[str, float | None] = {}
    for m in shortlist:
        speed = speeds.get(m)
        seconds[m] = (
            (TRAIN_PASS_FORWARDS * len(split.train) + len(split.val)) / speed
            if speed is not None and math.isfinite(speed) and speed > 0
            else None
        )
    if request.budget_unit == "seconds":
        unknown = [m for m, s in seconds.items() if s is None]
        if unknown:
            raise InvalidInputError(
                f"a budget in seconds needs each model's measured speed, and the ranking measured none for"
                f" {', '.join(unknown)}; give the budget in images",
                field="budget_unit",
            )
        cost = {m: float(s) for m, s in seconds.items() if s is not None}
    else:
        cost = dict.fromkeys(shortlist, passes)
    least = minimum_budget(cost, shortlist)
    if request.budget is not None and request.budget < least * (1 - 1e-9):
        raise InvalidInputError(
            f"budget {request.budget:g} {request.budget_unit} is below the minimum of {least:,.0f}"
            f" {request.budget_unit} (one epoch of each of the {k} shortlisted models); raise the budget to"
            f" at least {math.ceil(least)} or lower top_k",
            field="budget",
        )
    scored = None
    if scored_rows is not None:
        rows = np.asarray(list(scored_rows), dtype=np.int64)
        scored = {
            "scored": int(rows.size),
            "in_fine_tune": int(np.isin(rows, split.train).sum()),
            "in_validation": int(np.isin(rows, split.val).sum()),
        }
    return ConfirmPlan(
        request=request,
        shortlist=shortlist,
        ranking_order=order,
        top_k_note=note,
        schedule=schedule,
        split=split,
        epoch_cost=cost,
        epoch_seconds=seconds,
        minimum_budget=least,
        estimated_cost=estimated_cost(cost, shortlist, schedule[-1], request.eta),
        scored_rows=scored,
    )


def plan_from_dict(payload: Mapping[str, Any]) -> ConfirmPlan:
    """A stored plan (:meth:`ConfirmPlan.to_dict` with the request) back as a plan."""
    request = ConfirmRequest.from_dict(payload["request"])
    split = payload["split"]
    return ConfirmPlan(
        request=request,
        shortlist=list(payload["shortlist"]),
        ranking_order=list(payload["ranking_order"]),
        top_k_note=payload.get("top_k_note"),
        schedule=list(payload["schedule"]),
        split=Split(
            train=np.asarray(split["fine_tune"], dtype=np.int64),
            val=np.asarray(split["validation"], dtype=np.int64),
            test=np.zeros(0, dtype=np.int64),
        ),
        epoch_cost={m: float(c) for m, c in payload["epoch_cost"].items()},
        epoch_seconds=dict(payload["epoch_seconds"]),
        minimum_budget=float(payload["minimum_budget"]),
        estimated_cost=float(payload["estimated_cost"]),
        scored_rows=payload.get("scored_rows"),
    )
