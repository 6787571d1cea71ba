"""Successive halving over epochs of fine-tuning: the pure core of the confirmation stage.

A ranking shortlists its top-k models; the confirmation stage fine-tunes them in *rungs* and
after each rung keeps the best ``1/eta`` by validation accuracy, until one is left, which trains
on to the end of the schedule. This is successive halving (Jamieson & Talwalkar, "Non-stochastic
best arm identification and hyperparameter optimization", AISTATS 2016), the inner loop of
Hyperband (Li et al., JMLR 2018), with epochs as the resource; the pick is judged by its regret
(the best model's test accuracy minus the pick's), as in Renggli et al., "Which model to
transfer? Finding the needle in the growing haystack", CVPR 2022 (arXiv 2010.06402).

Shapes and units:

* a *curve* is one model's validation accuracy after epochs ``1..E`` of one fine-tuning run on
  the full schedule (e.g. cosine over ``E`` epochs): ``curve[e - 1]`` is what it shows after
  epoch ``e``. A rung *continues the same schedule* from the previous rung's checkpoint, so the
  validation accuracy a model shows at a rung ending at epoch ``e`` is ``curve[e - 1]``; a
  simulation on cached full runs is exact for a trainer that resumes the full schedule;
* ``epoch_cost``: model -> the cost of one epoch of it, in any unit (seconds, GPU-hours); a
  ``budget`` and every returned cost are in that unit.

Pure numpy: no torch, no service code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoorank.errors import InvalidInputError

# One model's validation accuracy after epoch 1, 2, ... (None or NaN: the run diverged).
Curve = Sequence[float | None] | np.ndarray

# The next rung is refused when it would pass the budget by more than this (relative): the same
# costs summed in another order differ by ~1e-16 per term, so a budget set to
# :func:`estimated_cost` never stops a run early by rounding.
BUDGET_RTOL = 1e-9

DIVERGED = "diverged (NaN)"
KEPT = "kept"
BUDGET_SPENT = "budget spent"


@dataclass(frozen=True)
class HalvingRecord:
    """One shortlisted model's part in a run of :func:`successive_halving`.

    ``epochs``: epochs trained; ``val_accuracy``: its validation accuracy after them (NaN when
    it diverged); ``rung``: 1-based index into the schedule of the last rung it trained in;
    ``reason``: ``"kept"`` (the pick), ``"eliminated at rung r (val acc x < cutoff y)"``,
    ``"budget spent"`` (still in the running when the budget stopped the run) or
    ``"diverged (NaN)"``; ``cost``: what its epochs cost (``epochs x`` its epoch cost)."""

    model: str
    epochs: int
    val_accuracy: float
    rung: int
    reason: str
    cost: float


@dataclass(frozen=True)
class HalvingResult:
    """What a run of :func:`successive_halving` did.

    ``pick``: the model kept (None only when every shortlisted model diverged, or the last one
    did); ``runner_up``: the best of the last models eliminated (or, when the budget stopped
    the run, the second best still in the running), None with a one-model shortlist;
    ``cost``: everything trained, in the unit of ``epoch_cost``; ``records``: model ->
    :class:`HalvingRecord`, in the shortlist's order; ``schedule``: the epoch at the end of
    each rung (:func:`rungs`); ``stopped_by_budget``: the next rung would have passed
    ``budget``; ``note``: a sentence for users when the run did not end with a fully trained
    pick."""

    pick: str | None
    runner_up: str | None
    cost: float
    records: dict[str, HalvingRecord]
    schedule: tuple[int, ...]
    budget: float | None = None
    stopped_by_budget: bool = False
    note: str | None = None
    # Only with ``partial=True``: the models whose validation accuracy at rung ``waiting_rung``
    # is not known yet (train them to ``schedule[waiting_rung - 1]`` and call again).
    waiting_for: tuple[str, ...] = ()
    waiting_rung: int | None = None

    @property
    def finished(self) -> bool:
        """False while models still have a rung to train (``partial=True`` only)."""
        return not self.waiting_for

    @property
    def complete(self) -> bool:
        """True when the pick was fine-tuned to the end of the schedule."""
        return self.pick is not None and self.records[self.pick].epochs == self.schedule[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN validation accuracies (diverged) as None."""
        return {
            "pick": self.pick,
            "runner_up": self.runner_up,
            "cost": self.cost,
            "schedule": list(self.schedule),
            "budget": self.budget,
            "stopped_by_budget": self.stopped_by_budget,
            "complete": self.complete,
            "finished": self.finished,
            "waiting_for": list(self.waiting_for),
            "waiting_rung": self.waiting_rung,
            "note": self.note,
            "records": [
                {
                    "model": r.model,
                    "epochs": r.epochs,
                    "val_accuracy": None if math.isnan(r.val_accuracy) else r.val_accuracy,
                    "rung": r.rung,
                    "reason": r.reason,
                    "cost": r.cost,
                }
                for r in self.records.values()
            ],
        }


def _integer(value: object, name: str, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum} ({what}), got {value!r}", field=name)
    return int(value)


def rungs(max_epochs: int, eta: int = 2, min_epochs: int = 1) -> list[int]:
    """The epoch at the end of each rung: ``min_epochs * eta**i`` while below ``max_epochs``,
    then ``max_epochs`` (the last rung always finishes the schedule).

    >>> rungs(8)
    [1, 2, 4, 8]
    >>> rungs(10, eta=3)
    [1, 3, 9, 10]
    """
    max_epochs = _integer(max_epochs, "max_epochs", 1, "the epochs of the full fine-tuning schedule")
    eta = _integer(eta, "eta", 2, "each rung keeps 1/eta of the models and multiplies the epochs by eta")
    min_epochs = _integer(min_epochs, "min_epochs", 1, "the epochs of the first rung")
    if min_epochs > max_epochs:
        raise InvalidInputError(
            f"min_epochs ({min_epochs}) must be <= max_epochs ({max_epochs})", field="min_epochs"
        )
    out = []
    epoch = min_epochs
    while epoch < max_epochs:
        out.append(epoch)
        epoch *= eta
    return [*out, max_epochs]


def _shortlist(top_k_order: Sequence[str]) -> list[str]:
    if isinstance(top_k_order, str):
        raise InvalidInputError(
            f"top_k_order must be a list of model names, got the string {top_k_order!r}", field="top_k_order"
        )
    order = list(top_k_order)
    if not order:
        raise InvalidInputError("top_k_order is empty: shortlist at least one model", field="top_k_order")
    twice = sorted({m for m in order if order.count(m) > 1})
    if twice:
        raise InvalidInputError(
            f"top_k_order lists {', '.join(twice)} more than once: give each model once, best-ranked first",
            field="top_k_order",
        )
    return order


def _costs(epoch_cost: Mapping[str, float], order: Sequence[str]) -> dict[str, float]:
    missing = [m for m in order if m not in epoch_cost]
    if missing:
        raise InvalidInputError(f"epoch_cost has no cost for {', '.join(missing)}", field="epoch_cost")
    out = {m: float(epoch_cost[m]) for m in order}
    bad = [m for m, c in out.items() if not math.isfinite(c) or c < 0]
    if bad:
        raise InvalidInputError(
            f"epoch_cost must be finite and >= 0, got {', '.join(f'{m}: {out[m]!r}' for m in bad)}",
            field="epoch_cost",
        )
    return out


def _curves(
    curves: Mapping[str, Curve], order: Sequence[str], max_epochs: int, *, partial: bool = False
) -> dict[str, np.ndarray]:
    missing = [m for m in order if m not in curves]
    if missing:
        raise InvalidInputError(f"curves has no validation curve for {', '.join(missing)}", field="curves")
    out = {}
    for m in order:
        try:
            curve = np.asarray(curves[m], dtype=np.float64)  # None -> NaN
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"curves[{m!r}] must be a sequence of numbers (validation accuracy after epoch 1..E)",
                field="curves",
            ) from exc
        if partial and curve.ndim == 1 and curve.size <= max_epochs:
            if not np.isfinite(curve).all():  # diverged: nothing more will come
                curve = np.concatenate([curve, np.full(max_epochs - curve.size, np.nan)])
            out[m] = curve
            continue
        if curve.ndim != 1 or curve.size < max_epochs:
            raise InvalidInputError(
                f"curves[{m!r}] has {curve.size if curve.ndim == 1 else curve.shape} epochs; max_epochs="
                f"{max_epochs} needs one validation accuracy per epoch up to it",
                field="curves",
            )
        out[m] = curve[:max_epochs]
    return out


def minimum_budget(
    epoch_cost: Mapping[str, float], top_k_order: Sequence[str], *, min_epochs: int = 1
) -> float:
    """The least budget :func:`successive_halving` accepts: the first rung, i.e. ``min_epochs``
    epochs of every shortlisted model (below it no model would be compared with another)."""
    order = _shortlist(top_k_order)
    cost_of = _costs(epoch_cost, order)
    return _integer(min_epochs, "min_epochs", 1, "the epochs of the first rung") * math.fsum(cost_of.values())


def estimated_cost(
    epoch_cost: Mapping[str, float],
    top_k_order: Sequence[str],
    max_epochs: int,
    eta: int = 2,
    *,
    min_epochs: int = 1,
) -> float:
    """Dry run: what :func:`successive_halving` spends when nothing stops it early (no budget,
    no divergence), before any curve is known. Which models survive is not known yet, so this
    is the worst case, the dearest models surviving every rung: a budget of this size never
    stops a run, and the actual cost equals it when every model's epoch costs the same."""
    order = _shortlist(top_k_order)
    dearest = sorted(_costs(epoch_cost, order).values(), reverse=True)
    schedule = rungs(max_epochs, eta, min_epochs)
    n, trained, total = len(order), 0, 0.0
    for end in schedule:
        total += (end - trained) * math.fsum(dearest[:n])
        trained = end
        n = math.ceil(n / eta)
    return total


def _budget(budget: float | None, minimum: float, min_epochs: int) -> float | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int | float | np.number):
        raise InvalidInputError(f"budget must be a number or None, got {budget!r}", field="budget")
    value = float(budget)
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(
            f"budget must be a positive number in the units of epoch_cost (e.g. seconds), or None for no"
            f" limit; got {budget!r}",
            field="budget",
        )
    if value < minimum * (1 - BUDGET_RTOL):
        raise InvalidInputError(
            f"budget {value:g} is below {minimum:g}, the cost of {min_epochs} epoch(s) of every shortlisted"
            " model (minimum_budget): raise the budget or shorten the shortlist (top_k)",
            field="budget",
        )
    return value


def _eliminated(rung: int, value: float, cutoff: float) -> str:
    if value < cutoff:
        return f"eliminated at rung {rung} (val acc {value:.4g} < cutoff {cutoff:.4g})"
    return (
        f"eliminated at rung {rung} (val acc {value:.4g} = cutoff {cutoff:.4g}; ties go to the higher-ranked)"
    )


def successive_halving(
    curves: Mapping[str, Curve],
    epoch_cost: Mapping[str, float],
    *,
    top_k_order: Sequence[str],
    max_epochs: int,
    eta: int = 2,
    budget: float | None = None,
    min_epochs: int = 1,
    partial: bool = False,
) -> HalvingResult:
    """Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018) of the shortlist
    ``top_k_order`` (best-ranked first) over epochs of fine-tuning.

    At each rung of :func:`rungs` ``(max_epochs, eta, min_epochs)`` every surviving model
    trains on to the rung's epoch (cost: the epochs newly trained x its ``epoch_cost``); a model
    whose curve holds a NaN up to that epoch leaves (``"diverged (NaN)"``, charged to the
    rung); of the rest the best ``ceil(n / eta)`` by validation accuracy at the rung stay (only
    the best at the last rung), ties going to the model earlier in ``top_k_order``. Once one
    model is left it trains on through the remaining rungs to ``max_epochs``, so the pick is
    fully fine-tuned.

    ``budget`` (the units of ``epoch_cost``; None: no limit): when the next rung would cost
    more than what is left, the run stops there and picks, among the models still in the
    running, the best by validation accuracy at their last epoch (ties by ranking order).
    A budget below :func:`minimum_budget` is refused.

    ``curves``: model -> validation accuracy after epochs ``1..E`` (``E >= max_epochs``; NaN or
    None where the run diverged).

    ``partial=True`` drives a run whose curves are still being trained (the service, rung by
    rung): a curve may stop early, and where a surviving model's accuracy at the next rung is
    not known yet, the run stops there and says which models to train to which rung
    (``waiting_for``, ``waiting_rung``); with the curves completed, the call gives the same
    decisions as one over full curves.
    """
    order = _shortlist(top_k_order)
    schedule = rungs(max_epochs, eta, min_epochs)
    cost_of = _costs(epoch_cost, order)
    curve_of = _curves(curves, order, schedule[-1], partial=partial)
    limit = _budget(budget, minimum_budget(cost_of, order, min_epochs=min_epochs), min_epochs)
    position = {m: i for i, m in enumerate(order)}
    epochs = dict.fromkeys(order, 0)
    rung_of = dict.fromkeys(order, 0)
    reason: dict[str, str] = {}
    survivors, spent, runner_up, stopped_at = list(order), 0.0, None, None

    def latest(m: str) -> float:
        return float(curve_of[m][epochs[m] - 1])

    def by_accuracy(models: list[str]) -> list[str]:
        return sorted(models, key=lambda m: (-latest(m), position[m]))

    waiting: tuple[str, ...] = ()
    waiting_rung: int | None = None
    for r, end in enumerate(schedule, start=1):
        step = math.fsum((end - epochs[m]) * cost_of[m] for m in survivors)
        if limit is not None and spent + step > limit * (1 + BUDGET_RTOL):
            stopped_at = r
            break
        waiting = tuple(m for m in survivors if curve_of[m].size < end)
        if waiting:
            waiting_rung = r
            break
        spent += step
        for m in survivors:
            epochs[m], rung_of[m] = end, r
        alive = [m for m in survivors if np.isfinite(curve_of[m][:end]).all()]
        reason |= dict.fromkeys((m for m in survivors if m not in alive), DIVERGED)
        ranked = by_accuracy(alive)
        keep = 1 if r == len(schedule) else math.ceil(len(ranked) / eta)
        if len(ranked) > keep:
            cutoff = latest(ranked[keep - 1])
            reason |= {m: _eliminated(r, latest(m), cutoff) for m in ranked[keep:]}
            runner_up = ranked[keep]
        survivors = ranked[:keep]
        if not survivors:
            break

    pick: str | None = None
    note: str | None = None
    if waiting:
        reason |= {m: f"training in rung {waiting_rung}" for m in survivors}
        return HalvingResult(
            pick=None,
            runner_up=None,
            cost=spent,
            records=_records(order, epochs, rung_of, reason, cost_of, curve_of),
            schedule=tuple(schedule),
            budget=limit,
            waiting_for=waiting,
            waiting_rung=waiting_rung,
        )
    if survivors:
        ranked = by_accuracy(survivors)
        pick = ranked[0]
        reason[pick] = KEPT
        reason |= dict.fromkeys(ranked[1:], BUDGET_SPENT)
        if len(ranked) > 1:
            runner_up = ranked[1]
    elif all(reason[m] == DIVERGED for m in order):
        note = "every shortlisted model diverged (NaN): nothing to pick"
    else:
        note = (
            "the last model in the running diverged (NaN) before the end of the schedule: nothing to pick"
            + (f"; the runner-up was {runner_up}" if runner_up else "")
        )
    if stopped_at is not None and pick is not None:
        done = epochs[pick]
        note = (
            f"budget {limit:g} spent: stopped before rung {stopped_at} (epoch {schedule[stopped_at - 1]});"
            f" picked by validation accuracy after epoch {done}"
            + (f"; fine-tune {pick} on to epoch {schedule[-1]}" if done < schedule[-1] else "")
        )
    return HalvingResult(
        pick=pick,
        runner_up=runner_up,
        cost=spent,
        records=_records(order, epochs, rung_of, reason, cost_of, curve_of),
        schedule=tuple(schedule),
        budget=limit,
        stopped_by_budget=stopped_at is not None,
        note=note,
    )


def _records(
    order: Sequence[str],
    epochs: Mapping[str, int],
    rung_of: Mapping[str, int],
    reason: Mapping[str, str],
    cost_of: Mapping[str, float],
    curve_of: Mapping[str, np.ndarray],
) -> dict[str, HalvingRecord]:
    return {
        m: HalvingRecord(
            model=m,
            epochs=epochs[m],
            val_accuracy=(
                float(curve_of[m][epochs[m] - 1]) if epochs[m] and reason.get(m) != DIVERGED else math.nan
            ),
            rung=rung_of[m],
            reason=reason.get(m, BUDGET_SPENT),
            cost=epochs[m] * cost_of[m],
        )
        for m in order
    }


def accuracy_interval(
    correct_n: np.ndarray, *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy over validation rows: ``correct_n`` is 0/1
    (or bool) per row. A resample of the ``n`` rows with replacement holds Binomial(``n``,
    ``p``) correct rows (``p`` the observed accuracy), so it is drawn as such: the same
    distribution as resampling the rows, without ``n x resamples`` draws. The interval is a
    point at ``p`` = 0 or 1 (a limit of the percentile bootstrap: a perfect score on few rows
    is not certain)."""
    array = np.asarray(correct_n)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInputError(
            "correct_n must be a non-empty 1-D 0/1 vector (one entry per validation row), got shape"
            f" {array.shape}",
            field="correct_n",
        )
    if not np.isin(array, (0, 1)).all():
        raise InvalidInputError("correct_n must hold only 0 and 1 (or False and True)", field="correct_n")
    resamples = _integer(resamples, "resamples", 1, "bootstrap draws")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level!r}", field="level")
    n = array.size
    means = np.random.default_rng(seed).binomial(n, float(array.mean()), size=resamples) / n
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, *, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Accuracy of ``a`` minus that of ``b`` on the same validation rows (0/1 per row, same
    order), and its percentile bootstrap interval, rows resampled in pairs: ``(difference, low,
    high)``. An interval that holds 0 means the two cannot be told apart on these rows."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise InvalidInputError(
            "correct_a and correct_b must be 0/1 vectors over the same rows, got shapes"
            f" {a.shape} and {b.shape}",
            field="correct_n",
        )
    if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise InvalidInputError("correct_a and correct_b must hold only 0 and 1", field="correct_n")
    resamples = _integer(resamples, "resamples", 1, "bootstrap draws")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level!r}", field="level")
    diff = a - b
    rows = np.random.default_rng(seed).integers(0, diff.size, size=(resamples, diff.size))
    means = diff[rows].mean(axis=1)
    tail = (1 - level) / 2
    return float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def clamp_top_k(top_k: int, n_models: int) -> tuple[int, str | None]:
    """``top_k`` clamped to the ``n_models`` ranked, and a sentence saying so when it was
    (None otherwise). A ``top_k`` below 1 is refused."""
    n_models = _integer(n_models, "models", 1, "the number of ranked models to shortlist from")
    top_k = _integer(top_k, "top_k", 1, "how many of the best-ranked models to confirm by fine-tuning")
    if top_k > n_models:
        return n_models, f"top_k={top_k} is more than the {n_models} models ranked: confirming all {n_models}"
    return top_k, None
