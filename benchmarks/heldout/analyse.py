"""Choose the default ranking leave-one-target-out from the cached units, and report.

Writes ``benchmarks/results/heldout.json`` and ``heldout.md``: per target and on average, the
held-out weighted τ of every candidate procedure, of the whole selection (nested), of the
previous aggregate, of every single score and of the ImageNet prior; twin counts; seed-to-seed
agreement of the ground truth; each model's final train accuracy; the calibration of the
ranking's P(top-1); what each unit cost.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoorank.groundtruth.agreement import count_above_twin, seed_agreement
from zoorank.groundtruth.selection import (
    Procedure,
    SignedStack,
    TargetData,
    Training,
    best_single,
    choose,
    fit_temperature,
    fixed,
    fold_mean_interval,
    heldout_taus,
    heldout_values,
    nested_heldout,
    nonnegative_stack,
    policy_tau_interval,
    population_taus,
    signed_ridge_stack,
    single,
    top_k,
)
from zoorank.policy import RankingPolicy, load_policy, released
from zoorank.rank import RankOptions
from zoorank.scores import ScoreOutput, get_score
from zoorank.uncertainty import budgeted, rank_uncertainty, resampled

from .populations import population
from .targets import TARGETS
from .work import (
    EXTRA_KINDS,
    ONE_SEED_KINDS,
    RESULTS,
    SEEDS,
    cached,
    calib_scores,
    score_names,
    score_options,
    train_settings,
)

log = logging.getLogger(__name__)
OUT = Path("benchmarks/results")
RESAMPLES = RankOptions().bootstrap_resamples


def _load(kind: str, target: str) -> list[dict[str, Any]]:
    """The units of ``kind`` on ``target`` made under the current settings (a unit left from an
    older schedule or other job options is not used)."""
    return [u for u in cached(kind, target) if _current(kind, target, u)]


def _current(kind: str, target: str, unit: dict[str, Any]) -> bool:
    if kind == "train":
        wanted = train_settings(next(t for t in TARGETS if t.name == target)).to_dict()
        return bool(json.loads(json.dumps(wanted)) == unit["key"]["settings"])
    return bool(json.loads(json.dumps(score_options().to_dict())) == unit["key"]["options"])


def _pool_values(units: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """model -> score -> value as a job ranks it (pool-normalised over the benchmark's pool
    where the score has a pool step, e.g. NCTI)."""
    values: dict[str, dict[str, float | None]] = {u["model"]: {} for u in units}
    names = sorted({n for u in units for n in u.get("records", {})})
    for name in names:
        spec = get_score(name)
        ok = [u for u in units if u["records"].get(name, {}).get("value") is not None]
        for u in units:
            values[u["model"]][name] = u["records"].get(name, {}).get("value")
        if spec.pool_normalise is not None and len(ok) >= 2:
            outputs = [ScoreOutput(u["records"][name]["value"], u["records"][name]["details"]) for u in ok]
            for u, v in zip(ok, spec.pool_normalise(outputs), strict=True):
                values[u["model"]][name] = float(v)
    return values


def pool_populations(pool: list[dict[str, Any]]) -> dict[str, str]:
    """model -> population (:func:`benchmarks.heldout.populations.population`)."""
    return {m["label"]: m.get("population") or population(m["kind"]) for m in pool}


def pool_twins(pool: list[dict[str, Any]]) -> dict[str, str]:
    """pretrained ImageNet model -> its random-init twin (same architecture)."""
    randoms = {m["architecture"]: m["label"] for m in pool if m["kind"] == "random"}
    return {m["label"]: randoms[m["architecture"]] for m in pool if m["kind"] == "imagenet"}


def load_targets(pool: list[dict[str, Any]]) -> tuple[list[TargetData], dict[str, Any], list[str]]:
    """The targets, over the models whose every unit (scores, every training seed) is done on
    every target; what is known about each target (failures included); the models left out
    because some unit is still to do."""
    every = [m["label"] for m in pool]
    scores_by_target = {t.name: {u["model"]: u for u in _load("scores", t.name)} for t in TARGETS}
    runs_by_target: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for target in TARGETS:
        runs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for u in _load("train", target.name):
            runs[u["model"]][u["seed"]] = u
        runs_by_target[target.name] = runs

    kinds = {m["label"]: m["kind"] for m in pool}

    def complete(model: str, target: str) -> bool:
        needed = SEEDS[:1] if kinds[model] in ONE_SEED_KINDS else SEEDS
        return model in scores_by_target[target] and all(
            s in runs_by_target[target].get(model, {}) for s in needed
        )

    started = [t.name for t in TARGETS if any(complete(m, t.name) for m in every)]
    labels = [m for m in every if all(complete(m, t) for t in started)]
    pending = [m for m in every if m not in labels]
    populations = pool_populations(pool)
    done: list[TargetData] = []
    facts: dict[str, Any] = {}
    for target in TARGETS:
        scores = scores_by_target[target.name]
        runs = runs_by_target[target.name]
        extras_by_kind = {kind: {u["model"]: u for u in _load(kind, target.name)} for kind in EXTRA_KINDS}
        facts[target.name] = {
            "ref": target.ref,
            "complete": target.name in started and bool(labels),
            "extras_complete": dict.fromkeys(EXTRA_KINDS, False),
        }
        if not facts[target.name]["complete"]:
            continue
        errors = {scores[m]["error"] for m in labels if scores[m].get("error")}
        if len(errors) == 1 and all(scores[m].get("error") for m in labels):
            facts[target.name] |= {"complete": False, "failed": errors.pop()}  # e.g. one class
            continue
        merged = []
        for m in labels:
            unit = dict(scores[m])
            for extras in extras_by_kind.values():
                unit["records"] = {**unit.get("records", {}), **extras.get(m, {}).get("records", {})}
            merged.append(unit)
        values = _pool_values(merged)
        failed = {m: u["error"] for m in labels for u in runs[m].values() if u["error"]}
        per_seed = {
            s: {m: runs[m][s]["run"]["accuracy"] for m in labels if m not in failed and s in runs[m]}
            for s in SEEDS
        }
        accuracy = {
            m: statistics.fmean(per_seed[s][m] for s in SEEDS if m in per_seed[s]) for m in per_seed[SEEDS[0]]
        }
        train_acc = {
            m: statistics.fmean(_final_train_accuracy(runs[m][s]["run"]) for s in SEEDS if s in runs[m])
            for m in accuracy
        }
        facts[target.name] |= {
            "extras_complete": {
                kind: all(m in extras for m in labels) for kind, extras in extras_by_kind.items()
            },
            "accuracy": accuracy,
            "accuracy_by_seed": {str(s): v for s, v in per_seed.items()},
            "train_accuracy": train_acc,
            "training_failed": failed,
            "score_errors": {
                m: scores[m]["error"]
                or {n: r["error"] for n, r in scores[m]["records"].items() if r.get("error")}
                for m in labels
                if scores[m].get("error") or any(r.get("error") for r in scores[m]["records"].values())
            },
            "seed_agreement": seed_agreement(per_seed, resamples=1000),
            "split": next(iter(runs[labels[0]].values()))["split"],
            "settings": next(iter(runs[labels[0]].values()))["key"]["settings"],
            "seconds": {
                "scores": sum(scores[m]["seconds"] for m in labels),
                "train": sum(u["seconds"] for m in labels for u in runs[m].values()),
                **{
                    kind: sum(u["seconds"] for u in extras.values())
                    for kind, extras in extras_by_kind.items()
                },
            },
        }
        done.append(TargetData(target.name, values, accuracy, {m: populations[m] for m in labels}))
    return done, facts, pending


def layer_tree_summary(pool: list[dict[str, Any]], target: str = "digits") -> dict[str, Any]:
    """The ``trees`` units in brief: per model of the offline zoo (ImageNet and random twins) on
    ``target``, each hidden layer's tree fidelity and accuracy, the score, and its cost; and the
    score's cost over every unit."""
    offline = [m["label"] for m in pool if m["kind"] in ("imagenet", "random")]
    units = {u["model"]: u for u in _load("trees", target)}
    every = [u for t in TARGETS for u in _load("trees", t.name)]
    records = [u["records"]["layer_tree_fidelity"] for u in every if not u.get("error")]
    per_model = {}
    for label in offline:
        record = units.get(label, {}).get("records", {}).get("layer_tree_fidelity")
        if record is None or record.get("value") is None:
            continue
        details = record["details"]
        per_model[label] = {
            "value": record["value"],
            "seconds": record["seconds"],
            "mlp_accuracy": details["mlp_accuracy"],
            "layers": [
                {k: layer[k] for k in ("layer", "fidelity", "accuracy", "depth", "leaves")}
                for layer in details["layers"]
            ],
            "kappa_at_budget": details["kappa_at_budget"],
            "leaf_budget": details["leaf_budget"],
        }
    seconds = sorted(r["seconds"] for r in records if r.get("seconds") is not None)
    return {
        "target": target,
        "per_model": per_model,
        "units": len(every),
        "score_seconds_median": statistics.median(seconds) if seconds else None,
        "score_seconds_max": seconds[-1] if seconds else None,
    }


def _final_train_accuracy(run: dict[str, Any]) -> float:
    """Train accuracy after the last epoch (runs before it was recorded: of the tested,
    best-validation weights)."""
    last = run.get("last_train_accuracy")
    return float(run["train_accuracy"] if last is None else last)


def procedures(eligible: list[str], directions: dict[str, str]) -> list[Procedure]:
    """The candidates for the default, every one monotone (weights >= 0, wrong-way scores left
    out): every single score a default job could compute, the best single score on the training
    data, top-k mean ranks and mean z-scores, non-negative ridge stackers."""
    out = [single(s) for s in eligible]
    out.append(best_single(eligible, directions))
    for k in (2, 3, 5, 8, len(eligible)):
        out += [top_k(k, "mean_rank", eligible, directions), top_k(k, "weighted_z", eligible, directions)]
    out += [nonnegative_stack(eligible, directions, alpha) for alpha in (10.0, 100.0)]
    return out


def comparisons(eligible: list[str], directions: dict[str, str]) -> list[Procedure]:
    """Rows reported beside the candidates, never chosen: the released ``heldout-ridge-v3``
    (as released, and its procedure refitted per fold) and ``aggregate-v1``."""
    v3 = released("heldout-ridge-v3")
    v1 = load_policy("aggregate-v1")
    return [
        fixed(SignedStack("heldout-ridge-v3 (as released)", tuple(v3["scores"]), tuple(v3["weights"]))),
        signed_ridge_stack(eligible, directions, 10.0),
        fixed(v1.available(eligible)),
    ]


def calibration(
    targets: list[TargetData],
    fold_policies: dict[str, RankingPolicy],
    directions: dict[str, str],
    labels: list[str],
) -> dict[str, Any] | None:
    """See :func:`_calibration`, once with each fold's temperature (what a job reports) and
    once with data resampling alone (for comparison)."""
    with_t = _calibration(targets, fold_policies, directions, labels)
    without = _calibration(
        targets, {k: replace(p, temperature=None) for k, p in fold_policies.items()}, directions, labels
    )
    if with_t is None:
        return None
    if without is None:  # on some target no score's resamples fit every model's budget
        return with_t | {
            "resampling_only": None,
            "markdown": with_t["markdown"] + "\n\nWith the resampling of the rows alone (no temperature):"
            " not computable: on some targets no score's resamples fit every model's time budget, and a"
            " score resampled for some models only keeps its point value for all.",
        }
    return with_t | {
        "resampling_only": without,
        "markdown": with_t["markdown"] + "\n\nWith the resampling of"
        " the rows alone (no temperature):\n\n" + without["markdown"],
    }


def _calibration(
    targets: list[TargetData],
    fold_policies: dict[str, RankingPolicy],
    directions: dict[str, str],
    labels: list[str],
) -> dict[str, Any] | None:
    """How often the model with the highest P(top-1) is the truly best, against the P(top-1)
    it claimed; and over every (target, model) a reliability table by claimed P(top-1). Each
    target's P(top-1) comes from the policy fitted without it (held out)."""
    per_target = {}
    pairs: list[tuple[float, int]] = []
    for target in targets:
        units = {u["model"]: u for u in _load("calib", target.name)}
        if not all(m in units for m in labels) or units[labels[0]]["key"]["scores"] != calib_scores():
            return None
        policy = fold_policies[target.name]
        boot = {}
        for m in labels:  # what a job would resample: the policy's scores that fit the budget
            u = units[m]
            fits = budgeted(
                list(policy.scores), u["seconds_by_score"], u["model_seconds"], resamples=RESAMPLES
            )
            boot[m] = {s: u["bootstrap"][s] for s in fits if s in u["bootstrap"]}
        point = {m: dict(target.values[m]) for m in labels}
        order = [str(row["model"]) for row in policy.rank(point, directions).rows]
        found = rank_uncertainty(point, boot, policy, directions)
        p_top1 = {m: found["per_model"][m]["p_top1"] for m in labels}
        best = max(target.accuracy, key=lambda m: target.accuracy[m])
        pick = max(labels, key=lambda m: (p_top1[m], -order.index(m)))
        per_target[target.name] = {
            "pick": pick,
            "claimed_p_top1": p_top1[pick],
            "truly_best": best,
            "hit": pick == best,
            "p_top1_of_truly_best": p_top1[best],
            "top_two": found["top_two"],
        }
        pairs += [(p_top1[m], int(m == best)) for m in labels]
    bins = [(0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 1.01)]
    reliability = []
    for lo, hi in bins:
        inside = [(p, h) for p, h in pairs if lo <= p < hi]
        if inside:
            reliability.append(
                {
                    "bin": [lo, min(hi, 1.0)],
                    "n": len(inside),
                    "mean_claimed": statistics.fmean(p for p, _ in inside),
                    "share_truly_best": statistics.fmean(h for _, h in inside),
                }
            )
    hits = [v["hit"] for v in per_target.values()]
    claimed = [v["claimed_p_top1"] for v in per_target.values()]
    lines = [
        f"The pick (highest P(top-1)) was the truly best model on {sum(hits)} of {len(hits)} held-out"
        " targets; "
        f"it claimed a mean P(top-1) of {statistics.fmean(claimed):.2f}.",
        "",
        "| target | pick | claimed P(top-1) | truly best | its P(top-1) | top two settled? |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in per_target.items():
        lines.append(
            f"| {name} | {v['pick']} | {v['claimed_p_top1']:.2f} | {v['truly_best']} | "
            f"{v['p_top1_of_truly_best']:.2f} | {'yes' if v['top_two']['settled'] else 'no'} |"
        )
    lines += ["", "| claimed P(top-1) | models | mean claimed | share truly best |", "|---|---|---|---|"]
    for row in reliability:  # type: dict[str, Any]
        lines.append(
            f"| {row['bin'][0]:.2f}-{row['bin'][1]:.2f} | {row['n']} | {row['mean_claimed']:.3f} | "
            f"{row['share_truly_best']:.3f} |"
        )
    return {
        "per_target": per_target,
        "hit_rate": statistics.fmean(hits),
        "mean_claimed_p_top1": statistics.fmean(claimed),
        "reliability": reliability,
        "markdown": "\n".join(lines),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def analyse(*, resamples: int = 1000) -> dict[str, Any]:
    pool = json.loads((RESULTS / "pool.json").read_text())
    targets, facts, pending = load_targets(pool)
    if len(targets) < 3:
        raise SystemExit(f"only {len(targets)} complete targets; leave-one-out needs at least 3")
    labels = sorted(targets[0].accuracy)
    eligible = score_names("scores")
    extras = [
        name
        for kind, names in EXTRA_KINDS.items()
        if all(facts[t.name]["extras_complete"][kind] for t in targets)
        for name in names
    ]
    directions: dict[str, str] = {
        s: get_score(s).direction for s in [*eligible, *(n for v in EXTRA_KINDS.values() for n in v)]
    }
    candidates = procedures(eligible, directions)
    compared = comparisons(eligible, directions)
    twins = pool_twins(pool)
    chosen, table = choose(candidates, targets, directions, twins)
    for procedure in compared:
        table[procedure.name] = population_taus(procedure, targets, directions)
    loto = {p.name: heldout_taus(p, targets, directions) for p in [*candidates, *compared]}
    nested = nested_heldout(candidates, targets, directions, twins)
    fitted = chosen.fit(Training(tuple(targets)))
    assert isinstance(fitted, RankingPolicy)
    policy = replace(fitted, temperature=fit_temperature(heldout_values(chosen, targets, directions)))
    # Reported only (not candidates): the expensive scores (Betti variants, layer trees).
    for name in extras:
        table[f"single:{name}"] = population_taus(single(name), targets, directions)
        loto[f"single:{name}"] = heldout_taus(single(name), targets, directions)

    def summary(per: dict[str, float]) -> dict[str, Any]:
        lo, hi = fold_mean_interval(per)
        return {"mean": statistics.fmean(0.0 if math.isnan(v) else v for v in per.values()), "ci95": [lo, hi]}

    def both(name: str) -> dict[str, Any]:
        return {
            "target_x_population": summary(table[name]) | {"per_fold": table[name]},
            "loto": summary(loto[name]) | {"per_target": loto[name]},
        }

    nested_loto = {t: float(v["weighted_tau"]) for t, v in nested.items()}  # type: ignore[arg-type]
    nested_pop = {
        f"{t} x {pop}": float(tau)
        for t, v in nested.items()
        for pop, tau in v["by_population"].items()  # type: ignore[attr-defined]
    }
    single_means = {n: summary(per)["mean"] for n, per in table.items() if n.startswith("single:")}
    best_single_name = max(single_means, key=lambda n: single_means[n])
    for row in nested.values():
        row["policy"] = row["policy"].to_dict()  # type: ignore[attr-defined]
    twin_counts = {}
    fold_policies = {}
    for i, target in enumerate(targets):
        rest = [t for j, t in enumerate(targets) if j != i]
        held = chosen.fit(Training(tuple(rest)))
        assert isinstance(held, RankingPolicy)
        held_policy = replace(held, temperature=fit_temperature(heldout_values(chosen, rest, directions)))
        fold_policies[target.name] = held_policy
        combined = held_policy.values(target.values, directions)
        twin_counts[target.name] = count_above_twin(combined, "higher", twins)
    # The calibration units resample these scores; the list only grows, so that units made for
    # an earlier choice stay usable (a unit's key holds the list it was made with).
    calib_path = RESULTS / "calib_scores.json"
    before = json.loads(calib_path.read_text()) if calib_path.exists() else []
    calib_names = sorted(set(before) | {s for p in fold_policies.values() for s in p.scores if resampled(s)})
    if calib_names != before:
        calib_path.write_text(json.dumps(calib_names) + "\n")
    target_cis = {
        "chosen_procedure_loto": {
            t.name: policy_tau_interval(fold_policies[t.name], t, directions, resamples=resamples)
            for t in targets
        }
    }
    populations = pool_populations(pool)
    payload = {
        "command": "python -m benchmarks.heldout run --workers 2 && python -m benchmarks.heldout analyse",
        "benchmark_commit": _commit(),
        "targets": [t.name for t in targets],
        "targets_incomplete": [name for name, f in facts.items() if not f["complete"]],
        "models": labels,
        "models_pending": pending,
        "populations": {
            pop: [m for m in labels if populations[m] == pop]
            for pop in sorted({populations[m] for m in labels})
        },
        "eligible_scores": eligible,
        "selection_rule": "among the candidates that rank every pretrained model above its random-init twin"
        " on the training targets, the fewest scores among those within noise of the best mean target x"
        " population held-out weighted tau (95 % interval of the paired difference, targets resampled,"
        " reaches 0)",
        "chosen": {"procedure": chosen.name, "policy": policy.to_dict()},
        "headline": {
            "nested_selection": {
                "target_x_population": summary(nested_pop) | {"per_fold": nested_pop},
                "loto": summary(nested_loto) | {"per_target": nested_loto},
                "choices": nested,
            },
            "chosen_procedure": {"procedure": chosen.name, **both(chosen.name)},
            "heldout_ridge_v3_as_released": {
                "procedure": "heldout-ridge-v3 (as released)",
                "note": "fitted on all 8 targets x 25 models: its figures on those are in-sample",
                **both("heldout-ridge-v3 (as released)"),
            },
            "heldout_ridge_v3_procedure": {
                "procedure": "signed-ridge-stack(alpha=10)",
                **both("signed-ridge-stack(alpha=10)"),
            },
            "previous_aggregate": {"procedure": "aggregate-v1", **both("aggregate-v1")},
            "best_single_score": {
                "score": best_single_name,
                "note": "picked as best over these folds: in-sample",
                **both(best_single_name),
            },
            "imagenet_prior": {"procedure": "single:imagenet_top1", **both("single:imagenet_top1")},
        },
        "procedures": {name: both(name) for name in table},
        "per_target_ci95": target_cis,
        "twins_above_random": twin_counts,
        "calibration": calibration(targets, fold_policies, directions, labels),
        "layer_trees": layer_tree_summary(pool),
        "facts": facts,
    }
    (OUT / "heldout.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    from .report import markdown

    (OUT / "heldout.md").write_text(markdown(payload))
    log.info("chosen %s: %s", chosen.name, policy.to_dict())
    return payload
