"""``python -m benchmarks.confirm`` -- what a confirmation stage buys: successive halving over
epochs of fine-tuning on a ranking's top-k, simulated on the held-out benchmark's cached
learning curves, judged by regret (Renggli et al., "Which model to transfer?", CVPR 2022,
arXiv 2010.06402) against the compute it spends.

Why the simulation is exact: every cached run (``benchmarks/results/heldout/train.jsonl.gz``) trained its
full schedule (cosine over E epochs, every epoch run) and recorded the validation accuracy after
each epoch. A rung of successive halving (Jamieson & Talwalkar, AISTATS 2016; the inner loop of
Hyperband, Li et al., JMLR 2018) continues that same schedule to a later epoch, so what a model
shows at a rung ending at epoch e is its cached ``history[e - 1]``: what a confirm trainer that
resumes the full schedule would see. The halving itself is :mod:`zoorank.confirm.halving`.

Per complete target of ``benchmarks/results/heldout.json`` and per training seed separately (a
user runs one seed):

* ground truth: the mean test accuracy over seeds (``facts[target]["accuracy"]``); regret = the
  best ground truth minus the pick's, in points (x100);
* cost: seconds of fine-tuning spent, as a fraction of fine-tuning every model on the full
  schedule with that seed (a model's epoch costs its run's seconds / epochs); ``overhead``: the
  part spent on models other than the pick (the pick's own fine-tune is due anyway);
* strategies: (a) the ranking's top-1 alone (cost 0); (b) halving of the ranking's top-k, k in
  {2, 3, 5}, at budgets of 10 %, 25 % and none; (c) halving of every model with no ranking (ties
  broken at random) at the same budgets; (d) halving of a random shortlist of k (seeded draws):
  what the scores add. A budget below one epoch of every shortlisted model cannot run: the
  first of the shortlist is taken, at no cost (a *fallback*, counted). References: a random
  model; every model fully fine-tuned and picked by final validation accuracy; the seed's own
  best test accuracy (which no user sees: the noise floor of a one-seed decision). Beyond the
  brief's grid (never default candidates): k in {8, 12}; halving compared on the best
  checkpoint's validation accuracy; rungs sized to the shortlist (first comparison after
  ``E / eta**ceil(log_eta k)`` epochs instead of 1); plain halving given exactly the compute a
  confirmation spent (equal cost).

Rankings: the released default (:data:`zoorank.policy.DEFAULT_RANKING`) and, with
``--policy-fit loto`` (or ``both``, the default), for each target the procedure that
:func:`zoorank.groundtruth.selection.choose` picks among :func:`benchmarks.heldout.analyse.procedures`
on the *other* targets, fitted on them: out of sample. The default top-k and budget are chosen
leave-one-target-out: on the other targets by "lowest mean regret, then lowest cost", reported on
the held-out one.

Writes ``benchmarks/results/confirm.json`` and ``confirm.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from zoorank.confirm.halving import accuracy_interval, successive_halving
from zoorank.errors import InvalidInputError
from zoorank.groundtruth.selection import TargetData, Training, bootstrap_mean_interval, choose
from zoorank.policy import DEFAULT_POLICY, DEFAULT_RANKING, RankingPolicy, released
from zoorank.scores import get_score

from .heldout.analyse import load_targets, pool_twins, procedures
from .heldout.work import RESULTS, SEEDS, cached, score_names

log = logging.getLogger(__name__)
OUT = Path("benchmarks/results")
KS = (2, 3, 5)  # the grid the default is chosen from
EXTRA_KS = (8, 12)  # reported beside it: the cost range where plain halving can run
BUDGETS: tuple[float | None, ...] = (0.10, 0.25, None)
ETA = 2
DRAWS = 200
AIM_REGRET, AIM_COST = 0.5, 0.25  # points; fraction of the all-models cost


@dataclass(frozen=True)
class Case:
    """One target, one training seed: the curves and costs a user running that seed would get."""

    target: str
    seed: int
    curves: dict[str, np.ndarray]  # model -> validation accuracy after epoch 1..epochs
    best_so_far: dict[str, np.ndarray]  # ... of the best checkpoint up to each epoch (NaN stays)
    epoch_cost: dict[str, float]  # model -> seconds per epoch
    epochs: int
    total: float  # seconds to fine-tune every model on the full schedule
    truth: dict[str, float]  # model -> mean test accuracy over seeds
    test: dict[str, float]  # model -> this seed's test accuracy (reference row only)

    @property
    def models(self) -> list[str]:
        return sorted(self.truth)

    def regret(self, model: str) -> float:
        return 100.0 * (max(self.truth.values()) - self.truth[model])


@dataclass(frozen=True)
class Outcome:
    regret: float  # points
    cost: float  # fraction of the all-models cost
    overhead: float  # ... spent on models other than the pick
    fallback: float  # share of runs whose budget was below the first rung


def _mean(outcomes: Sequence[Outcome]) -> Outcome:
    return Outcome(*(statistics.fmean(getattr(o, f) for o in outcomes) for f in Outcome.__dataclass_fields__))


# -- data ---------------------------------------------------------------------------------


def _runs(
    target: str, models: Sequence[str], settings: dict[str, Any]
) -> dict[int, dict[str, dict[str, Any]]]:
    """seed -> model -> the cached run (on the schedule ``heldout.json`` was analysed with)."""
    out: dict[int, dict[str, dict[str, Any]]] = {s: {} for s in SEEDS}
    for unit in cached("train", target):
        if (
            unit["model"] in models
            and unit["seed"] in out
            and unit["error"] is None
            and unit["key"]["settings"] == settings
        ):
            out[unit["seed"]][unit["model"]] = unit["run"]
    # A seed is a case only where every model has a run with it (the populations added for
    # issue 21 have one seed on some targets); seed 0 must be complete.
    missing = sorted(f"{m} (seed {SEEDS[0]})" for m in models if m not in out[SEEDS[0]])
    if missing:
        raise SystemExit(
            f"{target}: no usable training run for {', '.join(missing)}; rerun `python -m benchmarks.heldout"
            " analyse` so that heldout.json lists what is cached"
        )
    return {s: runs for s, runs in out.items() if all(m in runs for m in models)}


def _case(target: str, seed: int, runs: dict[str, dict[str, Any]], truth: dict[str, float]) -> Case:
    epochs = {r["epochs_run"] for r in runs.values()}
    if len(epochs) != 1:
        raise SystemExit(
            f"{target} seed {seed}: runs of {sorted(epochs)} epochs; the study needs one schedule"
        )
    curves = {
        m: np.array([h["val_accuracy"] for h in sorted(r["history"], key=lambda h: h["epoch"])], dtype=float)
        for m, r in runs.items()
    }
    return Case(
        target=target,
        seed=seed,
        curves=curves,
        best_so_far={m: np.maximum.accumulate(c) for m, c in curves.items()},
        epoch_cost={m: r["seconds"] / r["epochs_run"] for m, r in runs.items()},
        epochs=epochs.pop(),
        total=sum(r["seconds"] for r in runs.values()),
        truth=truth,
        test={m: r["accuracy"] for m, r in runs.items()},
    )


def load(heldout: dict[str, Any]) -> tuple[list[TargetData], list[Case], list[str]]:
    """The complete targets of ``heldout.json`` over its models (score values as a job ranks
    them, from :func:`benchmarks.heldout.analyse.load_targets`), one :class:`Case` per target
    and seed, and notes on what differs from ``heldout.json``."""
    pool = json.loads((RESULTS / "pool.json").read_text())
    loaded = {t.name: t for t in load_targets(pool)[0]}
    models = list(heldout["models"])
    targets, cases, notes = [], [], []
    for name in heldout["targets"]:
        if name not in loaded:
            raise SystemExit(f"{name} is in heldout.json but not complete in the cached units: rerun analyse")
        full = loaded[name]
        facts = heldout["facts"][name]
        keep = [m for m in models if m in facts["accuracy"]]  # a failed training has no ground truth
        if missing := [m for m in keep if m not in full.accuracy]:
            raise SystemExit(f"{name}: {', '.join(missing)} not complete in the cached units: rerun analyse")
        if dropped := [m for m in models if m not in keep]:
            notes.append(f"{name}: left out {', '.join(dropped)} (training failed)")
        if extra := sorted(set(full.accuracy) - set(models)):
            notes.append(
                f"{name}: {len(extra)} models completed since heldout.json was written were left out; scores"
                f" with a pool step (ncti) were normalised over {len(full.accuracy)} models"
            )
        truth = {m: float(facts["accuracy"][m]) for m in keep}
        targets.append(
            TargetData(name, {m: full.values[m] for m in keep}, truth, {m: full.population(m) for m in keep})
        )
        runs = _runs(name, keep, facts["settings"])
        cases += [_case(name, seed, runs[seed], truth) for seed in runs]
    return targets, cases, notes


# -- rankings -----------------------------------------------------------------------------


def _directions(scores: Sequence[str]) -> dict[str, str]:
    return {s: get_score(s).direction for s in scores}


def _ranked(policy: RankingPolicy, target: TargetData, directions: dict[str, str]) -> dict[str, Any]:
    ranking = policy.rank(target.values, directions)
    return {
        "order": [str(row["model"]) for row in ranking.rows],
        "policy": policy.name,
        "scores_used": ranking.used,
        "left_out": ranking.left_out,
    }


def released_rankings(targets: Sequence[TargetData]) -> dict[str, dict[str, Any]]:
    """target -> the released default's ranking (chosen with these targets: in-sample)."""
    directions = _directions(DEFAULT_RANKING.scores)
    return {t.name: _ranked(DEFAULT_RANKING, t, directions) for t in targets}


def loto_rankings(targets: Sequence[TargetData]) -> dict[str, dict[str, Any]]:
    """target -> the ranking by the procedure :func:`choose` picks on the other targets, fitted
    on them (the nested selection of ``heldout.json``, with its twin rule)."""
    eligible = score_names("scores")
    directions = _directions(eligible)
    candidates = procedures(eligible, directions)
    twins = pool_twins(json.loads((RESULTS / "pool.json").read_text()))
    out = {}
    for i, target in enumerate(targets):
        rest = tuple(t for j, t in enumerate(targets) if j != i)
        chosen, _ = choose(candidates, rest, directions, twins)
        policy = chosen.fit(Training(rest))
        assert isinstance(policy, RankingPolicy)
        out[target.name] = _ranked(policy, target, directions) | {"procedure": chosen.name}
    return out


# -- strategies ---------------------------------------------------------------------------


def halve(
    case: Case,
    shortlist: Sequence[str],
    fraction: float | None,
    *,
    min_epochs: int = 1,
    checkpoint: bool = False,
) -> Outcome:
    """Successive halving of ``shortlist`` on ``case`` with a budget of ``fraction`` of the
    all-models cost (None: none); below the first rung, the first of the shortlist at no cost.
    ``checkpoint``: compare models by the validation accuracy of their best checkpoint so far
    (what a trainer that keeps the best checkpoint reports) instead of the rung's last epoch."""
    budget = None if fraction is None else fraction * case.total
    try:
        result = successive_halving(
            case.best_so_far if checkpoint else case.curves,
            case.epoch_cost,
            top_k_order=shortlist,
            max_epochs=case.epochs,
            eta=ETA,
            budget=budget,
            min_epochs=min_epochs,
        )
    except InvalidInputError as exc:
        if exc.field != "budget":
            raise
        return Outcome(case.regret(shortlist[0]), 0.0, 0.0, 1.0)
    pick = result.pick or shortlist[0]  # None only if everything diverged (no cached run did)
    return Outcome(
        case.regret(pick),
        result.cost / case.total,
        (result.cost - result.records[pick].cost) / case.total,
        0.0,
    )


@dataclass(frozen=True)
class Row:
    strategy: str
    ranking: str | None
    k: int | str
    budget: float | str | None  # fraction, None: no limit, a string: not a halving
    run: Callable[[Case], Outcome]
    group: str = "headline"  # or "extension": beyond the brief's grid, never a default candidate


def _budget_label(budget: float | str | None) -> str:
    if budget is None:
        return "none"
    return budget if isinstance(budget, str) else f"{budget:.0%}"


Rankings = dict[str, dict[str, dict[str, Any]]]  # ranking name -> target -> ranking
Orders = dict[str, list[list[str]]]  # case key -> seeded random orders of the models


def _top1(case: Case, ranking: dict[str, dict[str, Any]]) -> Outcome:
    return Outcome(case.regret(ranking[case.target]["order"][0]), 0.0, 0.0, 0.0)


def sized_min_epochs(epochs: int, k: int, eta: int = ETA) -> int:
    """The first rung's epochs when the rungs are sized to the shortlist, as in successive
    halving proper (Jamieson & Talwalkar 2016): ``ceil(log_eta k)`` halvings end at the last
    epoch, so the first comparison comes after ``epochs / eta**halvings`` epochs, not after 1."""
    halvings = math.ceil(math.log(k, eta) - 1e-12) if k > 1 else 0
    return max(1, epochs // eta**halvings)


def _confirm(
    case: Case,
    ranking: dict[str, dict[str, Any]],
    k: int,
    budget: float | None,
    checkpoint: bool = False,
    sized: bool = False,
) -> Outcome:
    min_epochs = sized_min_epochs(case.epochs, k) if sized else 1
    return halve(
        case, ranking[case.target]["order"][:k], budget, checkpoint=checkpoint, min_epochs=min_epochs
    )


def _halving_all(case: Case, orders: Orders, budget: float | None) -> Outcome:
    return _mean([halve(case, order, budget) for order in orders[_key(case)]])


def _at_cost_of(case: Case, orders: Orders, ranking: dict[str, dict[str, Any]], k: int) -> Outcome:
    """Halving of every model with the budget that confirming the ranking's top-k spent."""
    return _halving_all(case, orders, _confirm(case, ranking, k, None).cost)


def _random_shortlist(case: Case, orders: Orders, k: int, budget: float | None) -> Outcome:
    return _mean([halve(case, order[:k], budget) for order in orders[_key(case)]])


def _fine_tune_all(case: Case, orders: Orders, checkpoint: bool) -> Outcome:
    return _mean(
        [
            halve(case, order, None, min_epochs=case.epochs, checkpoint=checkpoint)
            for order in orders[_key(case)]
        ]
    )


def _random_model(case: Case) -> Outcome:
    return Outcome(statistics.fmean(case.regret(m) for m in case.models), 0.0, 0.0, 0.0)


def _oracle(case: Case) -> Outcome:
    """The model with the seed's best test accuracy: what no user sees (the noise floor of a
    one-seed decision against the mean over seeds)."""
    best = max(case.test.values())
    tied = [m for m in case.models if case.test[m] == best]
    spent = {m: case.epochs * case.epoch_cost[m] for m in tied}
    return _mean([Outcome(case.regret(m), 1.0, 1.0 - spent[m] / case.total, 0.0) for m in tied])


def rows(rankings: Rankings, orders: Orders) -> list[Row]:
    """Every strategy of the study: the brief's grid (``headline``) and the rows beyond it
    (``extension``: larger k, selection on the best checkpoint, plain halving at the cost a
    confirmation spent)."""
    out = []
    for name, by_target in rankings.items():
        out.append(Row("ranking top-1", name, 1, "—", partial(_top1, ranking=by_target)))
        out += [
            Row("ranking + confirmation", name, k, b, partial(_confirm, ranking=by_target, k=k, budget=b))
            for k in KS
            for b in BUDGETS
        ]
    out += [
        Row("halving, all models, no ranking", None, "all", b, partial(_halving_all, orders=orders, budget=b))
        for b in BUDGETS
    ]
    out += [
        Row(
            "random shortlist + confirmation",
            None,
            k,
            b,
            partial(_random_shortlist, orders=orders, k=k, budget=b),
        )
        for k in KS
        for b in BUDGETS
    ]
    out += [
        Row("reference: a random model", None, 1, "—", _random_model),
        Row(
            "reference: fine-tune all, best final val acc",
            None,
            "all",
            None,
            partial(_fine_tune_all, orders=orders, checkpoint=False),
        ),
        Row("reference: the seed's best test acc (unseen)", None, "all", None, _oracle),
    ]
    for name, by_target in rankings.items():
        out += [
            Row(
                "ranking + confirmation",
                name,
                k,
                b,
                partial(_confirm, ranking=by_target, k=k, budget=b),
                "extension",
            )
            for k in EXTRA_KS
            for b in BUDGETS
        ]
        out += [
            Row(
                "ranking + confirmation, best-checkpoint val",
                name,
                k,
                None,
                partial(_confirm, ranking=by_target, k=k, budget=None, checkpoint=True),
                "extension",
            )
            for k in KS
        ]
        out += [
            Row(
                "ranking + confirmation, rungs sized to k",
                name,
                k,
                None,
                partial(_confirm, ranking=by_target, k=k, budget=None, sized=True),
                "extension",
            )
            for k in (*KS, *EXTRA_KS)
        ]
        out += [
            Row(
                f"halving, all models, at the cost of {name} top-{k}",
                None,
                "all",
                "matched",
                partial(_at_cost_of, orders=orders, ranking=by_target, k=k),
                "extension",
            )
            for k in (*KS, *EXTRA_KS)
        ]
    out.append(
        Row(
            "reference: fine-tune all, best-checkpoint val",
            None,
            "all",
            None,
            partial(_fine_tune_all, orders=orders, checkpoint=True),
            "extension",
        )
    )
    return out


def _key(case: Case) -> str:
    return f"{case.target}/s{case.seed}"


def random_orders(case: Case, draws: int) -> list[list[str]]:
    """``draws`` random orders of the case's models, seeded by target and seed."""
    rng = np.random.default_rng([0, zlib.crc32(_key(case).encode())])
    return [[str(m) for m in rng.permutation(case.models)] for _ in range(draws)]


# -- summaries ----------------------------------------------------------------------------


def summarise(row: Row, cases: Sequence[Case]) -> dict[str, Any]:
    per_case = {_key(c): row.run(c) for c in cases}
    targets = list(dict.fromkeys(c.target for c in cases))
    per_target = {
        t: _mean([o for c, o in zip(cases, per_case.values(), strict=True) if c.target == t]) for t in targets
    }
    regrets = [per_target[t].regret for t in targets]
    lo, hi = bootstrap_mean_interval(regrets)
    return {
        "strategy": row.strategy,
        "group": row.group,
        "ranking": row.ranking,
        "k": row.k,
        "budget": row.budget,
        "mean_regret": statistics.fmean(regrets),
        "regret_ci95": [lo, hi],
        "mean_cost": statistics.fmean(o.cost for o in per_target.values()),
        "mean_overhead": statistics.fmean(o.overhead for o in per_target.values()),
        "fallback_share": statistics.fmean(o.fallback for o in per_target.values()),
        "per_target": {t: vars(o) for t, o in per_target.items()},
        "per_case": {key: vars(o) for key, o in per_case.items()},
    }


def _find(summaries: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any]:
    return next(s for s in summaries if all(s[k] == v for k, v in match.items()))


def choose_defaults(
    summaries: Sequence[dict[str, Any]], ranking: str, targets: Sequence[str], *, extension: bool = False
) -> dict[str, Any]:
    """Leave-one-target-out choice of (top-k, budget) among the ranking's top-1 and its
    confirmation rows (``extension``: the larger k too): on the other targets the lowest mean
    regret, then the lowest mean cost (then the first listed); judged on the held-out target.
    Also the choice on every target (what to release)."""
    candidates = [
        s
        for s in summaries
        if s["ranking"] == ranking
        and s["strategy"] in ("ranking top-1", "ranking + confirmation")
        and (extension or s["group"] == "headline")
    ]

    def pick(names: Sequence[str]) -> dict[str, Any]:
        def key(s: dict[str, Any]) -> tuple[float, float]:
            regret = statistics.fmean(s["per_target"][t]["regret"] for t in names)
            cost = statistics.fmean(s["per_target"][t]["cost"] for t in names)
            return round(regret, 9), round(cost, 9)

        return min(candidates, key=key)

    folds = {}
    for held in targets:
        chosen = pick([t for t in targets if t != held])
        folds[held] = {
            "strategy": chosen["strategy"],
            "k": chosen["k"],
            "budget": chosen["budget"],
            "heldout_regret": chosen["per_target"][held]["regret"],
            "heldout_cost": chosen["per_target"][held]["cost"],
            "heldout_overhead": chosen["per_target"][held]["overhead"],
        }
    regrets = [f["heldout_regret"] for f in folds.values()]
    lo, hi = bootstrap_mean_interval(regrets)
    every = pick(targets)
    return {
        "ranking": ranking,
        "candidates": sorted({f"k={s['k']} budget {_budget_label(s['budget'])}" for s in candidates}),
        "rule": "leave one target out: lowest mean regret over the other targets (both seeds), then lowest"
        " mean cost; judged on the held-out target",
        "folds": folds,
        "heldout_mean_regret": statistics.fmean(regrets),
        "heldout_regret_ci95": [lo, hi],
        "heldout_mean_cost": statistics.fmean(f["heldout_cost"] for f in folds.values()),
        "heldout_mean_overhead": statistics.fmean(f["heldout_overhead"] for f in folds.values()),
        "on_every_target": {
            "strategy": every["strategy"],
            "k": every["k"],
            "budget": every["budget"],
            "mean_regret": every["mean_regret"],
            "mean_cost": every["mean_cost"],
        },
    }


def _paired(ours: dict[str, Any], plain: dict[str, Any], targets: Sequence[str]) -> dict[str, Any]:
    diff = [ours["per_target"][t]["regret"] - plain["per_target"][t]["regret"] for t in targets]
    lo, hi = bootstrap_mean_interval(diff)
    return {
        "k": ours["k"],
        "budget": ours["budget"],
        "regret": ours["mean_regret"],
        "cost": ours["mean_cost"],
        "halving_regret": plain["mean_regret"],
        "halving_cost": plain["mean_cost"],
        "halving_fallback_share": plain["fallback_share"],
        "difference": statistics.fmean(diff),
        "difference_ci95": [lo, hi],
        "ahead": ours["mean_regret"] < plain["mean_regret"],
        "clearly_ahead": hi < 0.0,
    }


def versus_halving(
    summaries: Sequence[dict[str, Any]], ranking: str, targets: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Ranking + confirmation against halving of every model with no ranking: at the same
    budget (the brief's grid), and at equal cost (plain halving given, per target and seed, the
    budget the confirmation spent); mean paired regret difference over targets, 95 % interval."""
    same_budget = [
        _paired(
            _find(summaries, ranking=ranking, strategy="ranking + confirmation", k=k, budget=b),
            _find(summaries, strategy="halving, all models, no ranking", budget=b),
            targets,
        )
        for b in BUDGETS
        for k in KS
    ]
    equal_cost = [
        _paired(
            _find(summaries, ranking=ranking, strategy="ranking + confirmation", k=k, budget=None),
            _find(summaries, strategy=f"halving, all models, at the cost of {ranking} top-{k}"),
            targets,
        )
        for k in (*KS, *EXTRA_KS)
    ]
    return {"same_budget": same_budget, "equal_cost": equal_cost}


def verdict(defaults: dict[str, Any], versus: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The aim: mean regret <= 0.5 points at <= 25 % of the all-models cost (the out-of-sample
    defaults), and ranking + confirmation ahead of plain halving at equal cost (every k of the
    grid: lower mean regret than halving of every model given the same compute; ``clearly``:
    the 95 % interval of the paired difference below 0 too)."""
    cheap = defaults["heldout_mean_regret"] <= AIM_REGRET and defaults["heldout_mean_cost"] <= AIM_COST
    grid = [c for c in versus["equal_cost"] if c["k"] in KS]
    return {
        "regret_and_cost_met": cheap,
        "ahead_at_equal_cost": all(c["ahead"] for c in grid),
        "clearly_ahead_at_equal_cost": [f"k={c['k']}" for c in grid if c["clearly_ahead"]],
        "met": cheap and all(c["ahead"] for c in grid),
        "behind_at_equal_cost": [f"k={c['k']}" for c in grid if not c["ahead"]],
        "behind_at_same_budget": [
            f"k={c['k']} at {_budget_label(c['budget'])}" for c in versus["same_budget"] if not c["ahead"]
        ],
    }


def target_facts(cases: Sequence[Case], rankings: Rankings, heldout: dict[str, Any]) -> dict[str, Any]:
    """Per target: schedule, validation rows and how noisy the validation accuracy is (95 %
    bootstrap interval, :func:`zoorank.confirm.halving.accuracy_interval`, of the best final
    validation accuracy of seed 0), the truly best model(s) and where each ranking put them."""
    out = {}
    for case in cases:
        if case.target in out:
            continue
        rows_n = int(heldout["facts"][case.target]["split"]["val"])
        best_val = max(float(c[-1]) for c in case.curves.values())
        correct = round(best_val * rows_n)
        lo, hi = accuracy_interval(np.array([1] * correct + [0] * (rows_n - correct)))
        top = max(case.truth.values())
        best = [m for m in case.models if case.truth[m] == top]
        out[case.target] = {
            "epochs": case.epochs,
            "val_rows": rows_n,
            "best_final_val_accuracy": best_val,
            "val_ci95": [lo, hi],
            "truly_best": best,
            "truly_best_accuracy": top,
            "all_models_seconds": {str(c.seed): c.total for c in cases if c.target == case.target},
            "rankings": {
                name: {
                    "top1": r[case.target]["order"][0],
                    "top1_regret": case.regret(r[case.target]["order"][0]),
                    "rank_of_truly_best": min(r[case.target]["order"].index(m) for m in best) + 1,
                    "policy": r[case.target].get("procedure", r[case.target]["policy"]),
                    "scores_used": r[case.target]["scores_used"],
                }
                for name, r in rankings.items()
            },
        }
    return out


# -- report -------------------------------------------------------------------------------


def _table(summaries: Sequence[dict[str, Any]], targets: Sequence[str], group: str) -> list[str]:
    lines = [
        "| strategy | ranking | k | budget | mean regret [95% CI] | mean cost | overhead | fallbacks | "
        + " | ".join(targets)
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(targets),
    ]
    for s in summaries:
        if s["group"] != group:
            continue
        lo, hi = s["regret_ci95"]
        per = " | ".join(f"{s['per_target'][t]['regret']:.2f}" for t in targets)
        lines.append(
            f"| {s['strategy']} | {s['ranking'] or '—'} | {s['k']} | {_budget_label(s['budget'])} |"
            f" {s['mean_regret']:.2f} [{lo:.2f}, {hi:.2f}] | {s['mean_cost']:.1%} |"
            f" {s['mean_overhead']:.1%} | {s['fallback_share']:.0%} | {per} |"
        )
    return lines


def _versus_table(rows_: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| budget | k | regret | cost | halving regret | halving cost | halving fallbacks"
        " | difference [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows_:
        lo, hi = c["difference_ci95"]
        lines.append(
            f"| {_budget_label(c['budget'])} | {c['k']} | {c['regret']:.2f} | {c['cost']:.1%} |"
            f" {c['halving_regret']:.2f} | {c['halving_cost']:.1%} | {c['halving_fallback_share']:.0%} |"
            f" {c['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] |"
        )
    return lines


def _defaults_lines(name: str, d: dict[str, Any], n_targets: int) -> list[str]:
    lo, hi = d["heldout_regret_ci95"]
    every = d["on_every_target"]
    lines = [
        f"**{name}** ranking, candidates {', '.join(d['candidates'])}. Held-out mean regret"
        f" **{d['heldout_mean_regret']:.2f} [{lo:.2f}, {hi:.2f}] points** at a mean cost of"
        f" {d['heldout_mean_cost']:.1%} (overhead {d['heldout_mean_overhead']:.1%}). On all {n_targets}"
        f" targets the rule picks {every['strategy']}, k = {every['k']},"
        f" budget {_budget_label(every['budget'])}"
        f" ({every['mean_regret']:.2f} points at {every['mean_cost']:.1%}, in-sample).",
        "",
        "| held-out target | chosen on the others | k | budget | held-out regret | cost |",
        "|---|---|---|---|---|---|",
    ]
    for t, f in d["folds"].items():
        lines.append(
            f"| {t} | {f['strategy']} | {f['k']} | {_budget_label(f['budget'])} |"
            f" {f['heldout_regret']:.2f} | {f['heldout_cost']:.1%} |"
        )
    return [*lines, ""]


def markdown(p: dict[str, Any]) -> str:
    targets = p["targets"]
    names = list(p["ranking_descriptions"])
    lines = [
        "# Confirmation stage: regret and cost of successive halving on cached learning curves",
        "",
        f"`{p['command']}` — {len(targets)} targets x {len(p['models'])} models x seeds {p['seeds']} of the"
        f" held-out benchmark (`heldout.json`, data commit {str(p['data_commit'])[:12]}); eta = {p['eta']};"
        f" rows without a ranking average {p['draws']} seeded random orders; {p['seconds']:.0f} s.",
        "",
        "Each rung continues the full fine-tuning schedule, so a model's validation accuracy at a rung is"
        " its cached `history[epoch - 1]`: the simulation is exact for a confirm trainer that resumes the"
        " schedule. Regret: best mean test accuracy (over seeds) minus the pick's, in points; mean over"
        " targets of the mean over the two seeds (each seed is one user's run), 95 % interval by"
        " resampling targets. Cost: fine-tuning seconds spent (the pick's included) / seconds to"
        " fine-tune every model on the full schedule with the same seed; overhead: the part spent on"
        " models other than the pick (whose fine-tune is due anyway). Budget: a cap on the cost."
        " Fallbacks: share of runs whose budget was below one epoch of every shortlisted model (the"
        " first of the shortlist is taken at no cost; without a ranking, a random model).",
        "",
        "Rankings: " + "; ".join(f"**{n}**: {how}" for n, how in p["ranking_descriptions"].items()) + ".",
        "",
        "## Aim",
        "",
        f"Mean regret <= {AIM_REGRET} points at <= {AIM_COST:.0%} of the all-models cost, and ranking +"
        " confirmation ahead of plain successive halving at equal cost.",
        "",
    ]
    for name in names:
        v, d = p["verdicts"][name], p["defaults"][name]
        cheap = "met" if v["regret_and_cost_met"] else "not met"
        ahead = "yes" if v["ahead_at_equal_cost"] else "no"
        clearly = ", ".join(v["clearly_ahead_at_equal_cost"]) or "no k"
        lines.append(
            f"* **{name}** ranking: out-of-sample defaults {d['heldout_mean_regret']:.2f} points at"
            f" {d['heldout_mean_cost']:.1%}: regret and cost **{cheap}**;"
            f" ahead of plain halving at equal cost (k in {list(KS)}): **{ahead}**"
            + (f" (behind at {', '.join(v['behind_at_equal_cost'])})" if v["behind_at_equal_cost"] else "")
            + f"; 95 % interval of the difference below 0 at {clearly}"
            + f". Overall **{'met' if v['met'] else 'not met'}**."
        )
    lines += [
        "",
        *p["findings"],
        "",
        "## The brief's grid",
        "",
        *_table(p["summaries"], targets, "headline"),
        "",
    ]
    lines += [
        "## Beyond the grid",
        "",
        "Larger shortlists; comparing on the best checkpoint's validation accuracy (what a trainer that"
        " keeps the best checkpoint reports) instead of the rung's last epoch; rungs sized to the"
        " shortlist (`min_epochs = E // eta**ceil(log_eta k)`: k = 2 compares after half the schedule"
        " instead of after epoch 1); plain halving given, per target and seed, exactly the compute a"
        " confirmation spent.",
        "",
        *_table(p["summaries"], targets, "extension"),
        "",
        "## Defaults chosen out of sample",
        "",
        f"Rule: {next(iter(p['defaults'].values()))['rule']}.",
        "",
    ]
    for name in names:
        lines += _defaults_lines(name, p["defaults"][name], len(targets))
    for name, d in p["defaults_with_larger_k"].items():
        lo, hi = d["heldout_regret_ci95"]
        lines += [
            f"With k in {list(EXTRA_KS)} admitted too, **{name}**: held-out mean regret"
            f" {d['heldout_mean_regret']:.2f} [{lo:.2f}, {hi:.2f}] at {d['heldout_mean_cost']:.1%};"
            f" on all targets k = {d['on_every_target']['k']},"
            f" budget {_budget_label(d['on_every_target']['budget'])}.",
            "",
        ]
    lines += ["## Ranking + confirmation against plain halving", ""]
    for name in names:
        versus = p["versus_halving"][name]
        lines += [
            f"**{name}** ranking. Difference: ranking + confirmation minus plain halving (negative: the"
            " ranking helps), mean over targets with its 95 % interval. At equal cost (plain halving gets"
            " the budget the confirmation spent, per target and seed):",
            "",
            *_versus_table(versus["equal_cost"]),
            "",
            "At the same budget (plain halving may spend more):",
            "",
            *_versus_table(versus["same_budget"]),
            "",
        ]
    lines += [
        "## Targets",
        "",
        "Validation noise: 95 % bootstrap interval over validation rows of the best final validation"
        " accuracy (seed 0). Rank of the truly best: where each ranking put the model with the best mean"
        " test accuracy (a top-k shortlist holds it only when this is <= k).",
        "",
        "| target | epochs | val rows | best val acc [95% CI] | truly best | "
        + " | ".join(f"{n}: top-1 (regret) | {n}: rank of truly best" for n in names)
        + " |",
        "|---|---|---|---|---|" + "---|---|" * len(names),
    ]
    for t, f in p["target_facts"].items():
        lo, hi = f["val_ci95"]
        cells = " | ".join(
            f"{r['top1']} ({r['top1_regret']:.2f}) | {r['rank_of_truly_best']}"
            for r in (f["rankings"][n] for n in names)
        )
        lines.append(
            f"| {t} | {f['epochs']} | {f['val_rows']} | {f['best_final_val_accuracy']:.3f}"
            f" [{lo:.3f}, {hi:.3f}] | {', '.join(f['truly_best'])} ({f['truly_best_accuracy']:.3f})"
            f" | {cells} |"
        )
    if p["notes"]:
        lines += ["", "## Notes", "", *(f"* {n}" for n in p["notes"])]
    return "\n".join(lines) + "\n"


def findings(summaries: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    """Sentences for the reader, from the numbers: the floors every validation-based pick sits
    on, and whether the budgets bound."""
    floor = _find(summaries, strategy="reference: fine-tune all, best final val acc")
    oracle = _find(summaries, strategy="reference: the seed's best test acc (unseen)")
    unbound = all(
        _find(summaries, ranking=n, strategy="ranking + confirmation", k=k, budget=b)["mean_regret"]
        == _find(summaries, ranking=n, strategy="ranking + confirmation", k=k, budget=None)["mean_regret"]
        for n in names
        for k in KS
        for b in BUDGETS
    )
    plain = _find(summaries, strategy="halving, all models, no ranking", budget=None)
    return [
        f"Floors: fine-tuning *every* model fully and picking by final validation accuracy has a mean regret"
        f" of {floor['mean_regret']:.2f} points; even the seed's own best *test* accuracy (which no user"
        f" sees) has {oracle['mean_regret']:.2f} (one seed against the mean of two). A pick by validation"
        f" accuracy on these validation sets cannot reach {AIM_REGRET} points on average"
        + (" here." if floor["mean_regret"] > AIM_REGRET else "."),
        "",
        "The 10 % and 25 % budgets "
        + ("never bind" if unbound else "bind only on some rows")
        + f" for the ranking's top-k with k in {list(KS)}: halving 2 to 5 models costs under 10 % of"
        " fine-tuning every model. Plain halving of every model needs one epoch of each for its first rung"
        " (1/E of the all-models cost, 12.5 % at 8 epochs): within the compute of confirming 2 to 5 models"
        " it cannot start on most targets and falls back to a random model (the fallbacks column); with no"
        f" budget it spends {plain['mean_cost']:.0%} for {plain['mean_regret']:.2f} points.",
    ]


def study(*, policy_fit: str = "both", draws: int = DRAWS) -> dict[str, Any]:
    began = time.perf_counter()
    heldout = json.loads((OUT / "heldout.json").read_text())
    targets, cases, notes = load(heldout)
    names = [t.name for t in targets]
    rankings: Rankings = {}
    descriptions = {}
    if policy_fit in ("released", "both"):
        rankings["released"] = released_rankings(targets)
        note = released(DEFAULT_POLICY).get("note") or DEFAULT_RANKING.provenance
        descriptions["released"] = (
            f"the released default `{DEFAULT_POLICY}` ({DEFAULT_RANKING.describe_rule()};"
            f" as released: {note});"
            " the same policy on every target, never refitted here: out of sample only on targets it was"
            " not chosen with"
        )
    if policy_fit in ("loto", "both"):
        log.info("refitting the ranking without each target")
        rankings["loto"] = loto_rankings(targets)
        descriptions["loto"] = (
            "per target, the procedure chosen and fitted on the other targets, out of sample ("
            + ", ".join(f"{t}: {r['procedure']}" for t, r in rankings["loto"].items())
            + ")"
        )
    orders = {_key(c): random_orders(c, draws) for c in cases}
    log.info("simulating %d cases", len(cases))
    summaries = [summarise(row, cases) for row in rows(rankings, orders)]
    defaults = {name: choose_defaults(summaries, name, names) for name in rankings}
    versus = {name: versus_halving(summaries, name, names) for name in rankings}
    payload = {
        "command": f"python -m benchmarks.confirm --policy-fit {policy_fit}",
        "data_commit": heldout.get("benchmark_commit"),
        "targets": names,
        "models": sorted({m for c in cases for m in c.truth}),
        "seeds": list(SEEDS),
        "eta": ETA,
        "draws": draws,
        "ks": list(KS),
        "extra_ks": list(EXTRA_KS),
        "budgets": list(BUDGETS),
        "aim": {"mean_regret_points": AIM_REGRET, "cost_fraction": AIM_COST},
        "ranking_descriptions": descriptions,
        "rankings": rankings,
        "summaries": summaries,
        "defaults": defaults,
        "defaults_with_larger_k": {
            name: choose_defaults(summaries, name, names, extension=True) for name in rankings
        },
        "versus_halving": versus,
        "verdicts": {name: verdict(defaults[name], versus[name]) for name in rankings},
        "findings": findings(summaries, list(rankings)),
        "target_facts": target_facts(cases, rankings, heldout),
        "notes": notes,
    }
    payload["seconds"] = time.perf_counter() - began
    (OUT / "confirm.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    (OUT / "confirm.md").write_text(markdown(payload))
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.confirm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--policy-fit",
        choices=("released", "loto", "both"),
        default="both",
        help="rank by the released default (in-sample), by a ranking refitted without each target, or both",
    )
    parser.add_argument("--draws", type=int, default=DRAWS, help="random orders per target and seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    payload = study(policy_fit=args.policy_fit, draws=args.draws)
    print("\n".join(_table(payload["summaries"], payload["targets"], "headline")))
    for name, v in payload["verdicts"].items():
        d = payload["defaults"][name]
        print(
            f"{name}: out-of-sample defaults {d['heldout_mean_regret']:.2f} points at"
            f" {d['heldout_mean_cost']:.1%}; aim {'met' if v['met'] else 'not met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
