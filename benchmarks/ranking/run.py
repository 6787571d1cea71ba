"""Run the ranking benchmark: build the zoo, then per target ``zoorank.groundtruth.validate``
(every score + fine-tuned ground truth over several seeds), then the PowerGrad study.

Results: ``ranking.json`` / ``ranking.md`` and ``powergrad.json`` / ``powergrad.md`` under
``config.out_dir``.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoorank.groundtruth import ValidationResult, compare_with_ground_truth, validate
from zoorank.rank import PreparedData, RankOptions, jsonable
from zoorank.scores import list_scores

from .config import BenchConfig
from .report import powergrad_markdown, ranking_markdown
from .zoo import ZooModel, build_zoo

log = logging.getLogger(__name__)


def pool(config: BenchConfig, zoo: list[ZooModel]) -> list[ZooModel]:
    """The models ranked: the controlled zoo, the offline ImageNet models, their random-init
    twins and the re-initialised model."""
    models = [m for m in zoo if m.kind == "zoo"]
    for name in config.offline_models:
        models.append(ZooModel(name, name, "imagenet", name))
    if config.random_twins:
        for name in config.offline_models:
            models.append(ZooModel(f"{name}@random", f"{name}@random", "random", name))
    models.extend(m for m in zoo if m.kind == "reinit")
    return models


def _relabel(result: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """Model references (long file paths) -> display labels throughout a validation dict."""

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {labels.get(k, k): fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            return labels.get(value, value)
        return value

    fixed: dict[str, Any] = fix(result)
    return fixed


def _progress(target: str) -> Any:
    def report(stage: str, model: str, index: int, total: int) -> None:
        log.info("%s: %s %d/%d %s", target, stage, index + 1, total, model.split("@file:")[0])

    return report


def rank_options(config: BenchConfig) -> RankOptions:
    """The options every benchmark score runs with: the fine-tuning resolution and split seed."""
    return RankOptions(
        input_size=config.train.input_size,
        seed=config.train.split_seed,
        tap_images_per_class=config.tap_images_per_class,
        device="cpu",
        score_params=config.score_params,
    )


def stored_pool(config: BenchConfig) -> list[ZooModel]:
    """The pool of the stored run, its zoo rebuilt when the cache is gone. The rebuilt zoo
    matches the stored one only under the same torch and BLAS thread counts (float reductions
    depend on them), so both are set before training."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(config.threads)
    with threadpool_limits(limits=config.blas_threads):
        return pool(config, build_zoo(config.zoo, config.cache_dir / "zoo", fresh=False))


def train_split(config: BenchConfig, ref: str) -> PreparedData:
    """The samples a target's scores saw in the benchmark (its fine-tuning train split) and
    their tap rows."""
    from zoorank.data import class_balanced_rows, load_dataset

    dataset = load_dataset(ref)
    split = config.train.split(dataset.labels)
    tap_rows = class_balanced_rows(dataset.labels[split.train], config.tap_images_per_class)
    return PreparedData(dataset=dataset, rows=split.train, tap_rows=tap_rows)


def run_ranking(config: BenchConfig, models: list[ZooModel]) -> dict[str, Any]:
    """Every target: scores + fine-tuned ground truth (cross-entropy) over ``config.seeds``."""
    refs = [m.ref for m in models]
    labels = {m.ref: m.label for m in models}
    scores = list(config.scores) if config.scores is not None else list_scores()
    options = rank_options(config)
    targets = {}
    for target in config.targets:
        began = time.perf_counter()
        result = validate(
            target,
            refs,
            mode="finetune",
            loss="ce",
            seeds=config.seeds,
            scores=scores,
            settings=config.train,
            rank_options=options,
            resamples=config.resamples,
            cache_dir=config.cache_dir / "features",
            on_model=_progress(target),
        )
        targets[target] = {"result": result, "seconds": time.perf_counter() - began}
        log.info("%s done in %.0f s", target, targets[target]["seconds"])
    return {"targets": targets, "labels": labels, "scores": scores}


def run_powergrad(
    config: BenchConfig, models: list[ZooModel], ce: dict[str, ValidationResult]
) -> dict[str, Any]:
    """Fine-tuning accuracy per α (α = 1 is cross-entropy: the ranking run's numbers)."""
    wanted = config.powergrad_models
    chosen = [m for m in models if wanted is None or m.label in wanted]
    labels = {m.ref: m.label for m in chosen}
    out: dict[str, Any] = {}
    for target in config.targets:
        per_alpha: dict[str, dict[str, list[float]]] = {}
        for alpha in config.powergrad_alphas:
            if alpha == 1.0 and target in ce:
                truth = ce[target].ground_truth
            else:
                truth = validate(
                    target,
                    [m.ref for m in chosen],
                    mode="finetune",
                    loss="powergrad",
                    alpha=alpha,
                    seeds=config.seeds,
                    scores=[],
                    settings=config.train,
                    resamples=0,
                    on_model=_progress(f"{target} α={alpha}"),
                ).ground_truth
            per_alpha[f"{alpha:g}"] = {
                labels[g.model]: [r.accuracy for r in g.runs]
                for g in truth
                if g.model in labels and g.accuracy is not None
            }
        out[target] = per_alpha
    return {
        "models": [m.label for m in chosen],
        "alphas": list(config.powergrad_alphas),
        "seeds": list(config.seeds),
        "accuracy": out,
        "summary": powergrad_summary(out),
    }


def powergrad_summary(per_target: dict[str, dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    """Per target and α: mean ± std over seeds per model, the mean over models, and the paired
    difference to α = 1 (same model, same seed) with how many models it helped."""
    summary: dict[str, Any] = {}
    for target, per_alpha in per_target.items():
        base = per_alpha.get("1", {})
        rows = {}
        for alpha, accs in per_alpha.items():
            means = {m: float(np.mean(v)) for m, v in accs.items()}
            diffs = [float(np.mean(np.subtract(v, base[m]))) for m, v in accs.items() if m in base]
            rows[alpha] = {
                "per_model": {m: {"mean": means[m], "std": float(np.std(v))} for m, v in accs.items()},
                "mean_over_models": float(np.mean(list(means.values()))) if means else None,
                "mean_difference_vs_ce": float(np.mean(diffs)) if diffs else None,
                "paired_differences": diffs,
                "models_helped": int(sum(d > 0 for d in diffs)),
                "models_hurt": int(sum(d < 0 for d in diffs)),
                "sign_test_p": _sign_test(diffs),
                "wilcoxon_p": _wilcoxon(diffs),
            }
        summary[target] = rows
    return summary


def _sign_test(diffs: list[float]) -> float | None:
    """Two-sided sign test p-value of the paired differences (zeros dropped)."""
    from scipy.stats import binomtest

    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        return None
    return float(binomtest(sum(d > 0 for d in nonzero), len(nonzero)).pvalue)


def _wilcoxon(diffs: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (zeros dropped)."""
    from scipy.stats import wilcoxon

    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) < 2:
        return None
    return float(wilcoxon(nonzero).pvalue)


def _environment(config: BenchConfig) -> dict[str, Any]:
    import sklearn
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "sklearn": sklearn.__version__,
        "machine": platform.machine(),
        "cpu_threads": config.threads,
        "blas_threads": config.blas_threads,
    }


def run(config: BenchConfig, *, fresh_zoo: bool = False, powergrad: bool = True) -> dict[str, Any]:
    """The whole benchmark; writes the results and returns the ranking JSON."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(config.threads)
    with threadpool_limits(limits=config.blas_threads):
        return _run(config, fresh_zoo=fresh_zoo, powergrad=powergrad)


def _run(config: BenchConfig, *, fresh_zoo: bool, powergrad: bool) -> dict[str, Any]:
    start = time.perf_counter()
    zoo = build_zoo(config.zoo, config.cache_dir / "zoo", fresh=fresh_zoo)
    zoo_seconds = time.perf_counter() - start
    models = pool(config, zoo)
    ranking = run_ranking(config, models)
    ranking_seconds = time.perf_counter() - start - zoo_seconds
    labels = ranking["labels"]
    ce = {t: v["result"] for t, v in ranking["targets"].items()}
    payload = {
        "command": "python -m benchmarks.ranking",
        "config": config.to_dict(),
        "environment": _environment(config),
        "models": [asdict(m) for m in models],
        "scores": ranking["scores"],
        "targets": {
            t: _relabel(v["result"].to_dict(), labels) | {"seconds": v["seconds"]}
            for t, v in ranking["targets"].items()
        },
        "seconds": {"zoo": zoo_seconds, "ranking": ranking_seconds},
    }
    payload["overall"] = overall(payload["targets"])
    if powergrad:
        began = time.perf_counter()
        pg = run_powergrad(config, models, ce)
        pg["seconds"] = time.perf_counter() - began
        pg["command"] = payload["command"]
        pg["settings"] = config.train.to_dict()
        payload["seconds"]["powergrad"] = pg["seconds"]
    payload["seconds"]["total"] = time.perf_counter() - start
    write(config.out_dir, "ranking", payload, ranking_markdown(payload))
    if powergrad:
        pg["total_benchmark_seconds"] = payload["seconds"]["total"]
        write(config.out_dir, "powergrad", pg, powergrad_markdown(pg))
    return payload


def overall(targets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Across targets (validation dicts): each score's mean weighted τ and Kendall τ, and
    whether it is tied with the best (paired bootstrap, per target) on *every* target."""
    names = sorted({a["score"] for t in targets.values() for a in t["agreement"]})
    rows = {}
    for name in names:
        per = [next(a for a in t["agreement"] if a["score"] == name) for t in targets.values()]
        wt = [a["weighted_tau"] for a in per if a["weighted_tau"] is not None]
        kt = [a["kendall_tau"] for a in per if a["kendall_tau"] is not None]
        rows[name] = {
            "mean_weighted_tau": statistics.fmean(wt) if len(wt) == len(per) else None,
            "mean_kendall_tau": statistics.fmean(kt) if len(kt) == len(per) else None,
            "tied_best_weighted_tau_on_every_target": all(
                name in (t.get("best") or {}).get("weighted_tau", {}).get("tied", [])
                for t in targets.values()
            ),
        }
    ranked = sorted(
        (n for n in rows if rows[n]["mean_weighted_tau"] is not None),
        key=lambda n: -float(rows[n]["mean_weighted_tau"] or 0.0),
    )
    return {"scores": rows, "by_mean_weighted_tau": ranked}


def reanalyse(out_dir: Path, *, resamples: int = 1000) -> dict[str, Any]:
    """Recompute every statistic of stored results with the current code, without training:
    score values and per-seed accuracies are read from ``ranking.json`` / ``powergrad.json``
    and agreement, intervals, ties, seed agreement, twin counts and the PowerGrad summary are
    rewritten (JSON and Markdown). Timings stay those of the run that produced the numbers."""
    payload = json.loads((out_dir / "ranking.json").read_text())
    randoms = {m["architecture"]: m["label"] for m in payload["models"] if m["kind"] == "random"}
    twins = {
        m["label"]: randoms[m["architecture"]]
        for m in payload["models"]
        if m["kind"] != "random" and m["architecture"] in randoms
    }
    for target in payload["targets"].values():
        per_seed: dict[int, dict[str, float]] = {}
        for truth in target["ground_truth"]:
            if truth["accuracy"] is not None:
                for run_ in truth["runs"]:
                    per_seed.setdefault(run_["seed"], {})[truth["model"]] = run_["accuracy"]
        directions = {a["score"]: a["direction"] for a in target["agreement"]}
        values = {
            name: {m: target["scores"].get(m, {}).get(name) for m in target["scores"]} for name in directions
        }
        found = compare_with_ground_truth(values, directions, per_seed, twins=twins, resamples=resamples)
        target["agreement"] = [jsonable(a.to_dict()) for a in found["agreement"]]
        for key in ("best", "seed_agreement", "above_random"):
            target[key] = jsonable(found[key])
    payload["overall"] = overall(payload["targets"])
    payload["reanalysed"] = {
        "command": "python -m benchmarks.ranking --reanalyse",
        "resamples": resamples,
    }
    write(out_dir, "ranking", payload, ranking_markdown(payload))
    pg_path = out_dir / "powergrad.json"
    if pg_path.exists():
        pg = json.loads(pg_path.read_text())
        pg["summary"] = powergrad_summary(pg["accuracy"])
        write(out_dir, "powergrad", pg, powergrad_markdown(pg))
    return payload


def write(folder: Path, stem: str, payload: dict[str, Any], markdown: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    (folder / f"{stem}.md").write_text(markdown)
    log.info("wrote %s/%s.{json,md}", folder, stem)


def add_scores(config: BenchConfig, names: list[str]) -> dict[str, Any]:
    """Score the stored benchmark's models with more scores, no training: the same train split,
    options and cached features as the run that produced ``ranking.json``; then reanalyse."""
    from threadpoolctl import threadpool_limits

    from zoorank.features.cache import FeatureCache
    from zoorank.rank import resolve_models, score_model
    from zoorank.scores import get_score

    path = config.out_dir / "ranking.json"
    payload = json.loads(path.read_text())
    models = stored_pool(config)
    options = rank_options(config)
    cache = FeatureCache(config.cache_dir / "features")
    for ref, target in payload["targets"].items():
        prepared = train_split(config, ref)
        for model in models:
            with threadpool_limits(limits=config.blas_threads):
                result = score_model(prepared, resolve_models([model.ref])[0], names, options, cache=cache)
            for name in names:
                record = result.scores.get(name)
                target["scores"].setdefault(model.label, {})[name] = None if record is None else record.value
            log.info("%s: %s %s", ref, model.label, {n: target["scores"][model.label][n] for n in names})
        known = {a["score"] for a in target["agreement"]}
        target["agreement"] += [
            {"score": n, "direction": get_score(n).direction} for n in names if n not in known
        ]
    payload["scores"] = sorted(set(payload["scores"]) | set(names))
    payload.setdefault("added_scores", []).extend(names)
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    return reanalyse(config.out_dir, resamples=config.resamples)
