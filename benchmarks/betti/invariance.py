"""Is Betti decay invariant to input resolution and to sub-sampling? (arXiv 2311.04592 §5)

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/betti/invariance.py
[--sizes 64,96,128] [--images-per-class 3,5,10]``
Writes ``benchmarks/results/betti_invariance.{json,md}``.

Zoo: the offline ImageNet weights (tf_efficientnet_lite0/1/2, mobilenetv2_100) and their
random-initialisation twins (``@random``), 8 models; data ``builtin:digits`` (10 classes).
For each input size, one forward pass per model keeps taps for the largest images-per-class;
each score then runs with ``images_per_class`` ∈ the grid (its subsets are nested: images are
taken in a fixed content-hash order). Reported per score (``betti_decay``,
``betti_decay_norm``, ``betti_auc``):

* θ per model and setting, and the ranking of the 8 models per setting;
* Kendall τ between the rankings of every pair of settings (resolution and sub-sampling
  invariance of the *ranking*), and against the largest setting;
* how often a pretrained model ranks above its own random twin (4 pairs: a sanity check
  with a known answer, pretrained ImageNet features transfer better than random ones);
* seconds per model: the forward pass, and the score at each setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from zoorank.features.cache import FeatureCache
from zoorank.rank import RankOptions, get_features, prepare_dataset
from zoorank.scores import ScoreInputs, get_score
from zoorank.topology.batch import usable_cores
from zoorank.zoo import get_model_spec

RESULTS = Path(__file__).resolve().parents[1] / "results"
PRETRAINED = [
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "mobilenetv2_100",
]
MODELS = [*PRETRAINED, *[f"{m}@random" for m in PRETRAINED]]
SCORES = ["betti_decay", "betti_decay_norm", "betti_auc"]  # --scores overrides


def ranking(values: dict[str, float]) -> list[str]:
    """Models best first; every Betti score is lower-is-better."""
    return sorted(values, key=lambda m: (values[m], m))


def run(sizes: list[int], per_class_grid: list[int], scores: list[str] = SCORES) -> dict[str, object]:
    cache_dir = os.environ.get("ZOORANK_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "zoorank-bench"))
    cache = FeatureCache(cache_dir)
    top = max(per_class_grid)
    theta: dict[str, dict[str, dict[str, float]]] = {s: {} for s in scores}
    seconds: dict[str, dict[str, float]] = {}
    forward: dict[str, float] = {}
    details: dict[str, dict[str, object]] = {}
    for size in sizes:
        options = RankOptions(samples_per_class=top, input_size=size or None, tap_images_per_class=top)
        prepared = prepare_dataset("builtin:digits", options)
        for model in MODELS:
            features, _, _ = get_features(prepared, get_model_spec(model), options, cache)
            forward[f"{model}@{size}"] = float(features.seconds)
            inputs = ScoreInputs(labels=prepared.labels, taps=features.taps, tap_rows=features.tap_rows)
            for score, per_class in itertools.product(scores, per_class_grid):
                setting = f"{size or 'native '}px/{per_class}"
                start = time.perf_counter()
                out = get_score(score)(inputs, images_per_class=per_class)
                elapsed = time.perf_counter() - start
                theta[score].setdefault(setting, {})[model] = float(out.value)
                seconds[f"{score}|{setting}|{model}"] = elapsed
                if score == "betti_decay" and per_class == top:
                    details[f"{model}@{size}"] = {
                        "omega": [t["omega"] for t in out.details["taps"]],
                        "taps": out.details["taps_used"],
                    }
            print(
                size,
                model,
                {s: round(theta[s][f"{size or 'native '}px/{top}"][model], 4) for s in scores},
                flush=True,
            )
        del prepared

    summary = {}
    for score in scores:
        settings = list(theta[score])
        reference = settings[-1]  # largest size, most images
        taus = {}
        for a, b in itertools.combinations(settings, 2):
            x = [theta[score][a][m] for m in MODELS]
            y = [theta[score][b][m] for m in MODELS]
            taus[f"{a} vs {b}"] = float(kendalltau(x, y).statistic)
        twin_wins = {
            setting: sum(theta[score][setting][m] < theta[score][setting][f"{m}@random"] for m in PRETRAINED)
            for setting in settings
        }
        summary[score] = {
            "reference": reference,
            "tau_vs_reference": {s: taus.get(f"{s} vs {reference}", 1.0) for s in settings},
            "tau_pairs": taus,
            "tau_min": min(taus.values()) if taus else 1.0,
            "tau_mean": float(np.mean(list(taus.values()))) if taus else 1.0,
            "pretrained_above_random_twin": twin_wins,
            "rankings": {s: ranking(theta[score][s]) for s in settings},
            "theta": theta[score],
            "score_seconds_per_model": {
                s: float(np.mean([seconds[f"{score}|{s}|{m}"] for m in MODELS])) for s in settings
            },
        }
    return {
        "benchmark": "betti_invariance",
        "dataset": "builtin:digits",
        "models": MODELS,
        "sizes": sizes,
        "images_per_class": per_class_grid,
        "cores": usable_cores(),
        "loadavg_at_end": os.getloadavg(),
        "forward_seconds": forward,
        "omega_betti_decay": details,
        "scores": summary,
    }


def to_markdown(result: dict[str, object]) -> str:
    lines = [
        "# Betti decay: invariance to input size and images per class",
        "",
        f"`builtin:digits`, models {', '.join(result['models'])}; sizes {result['sizes']} px, "  # type: ignore[arg-type]
        f"images per class {result['images_per_class']}; {result['cores']} shared cores "
        f"(load average at end {result['loadavg_at_end']}). Kendall τ between the rankings of the "
        "8 models under two settings; 'twins' = pretrained models ranked above their own random "
        f"twin (of 4). `{result.get('command', 'python benchmarks/betti/invariance.py')}`"
        " (size 0: each model's own resolution).",
        "",
    ]
    for score, s in result["scores"].items():  # type: ignore[union-attr]
        lines += [
            f"## {score}",
            "",
            f"τ over all pairs of settings: min {s['tau_min']:.2f}, mean {s['tau_mean']:.2f}. "
            f"Reference setting: {s['reference']}.",
            "",
            "| setting | τ vs reference | twins | score s/model | ranking (best first) |",
            "|---|---|---|---|---|",
        ]
        for setting, order in s["rankings"].items():
            lines.append(
                f"| {setting} | {s['tau_vs_reference'][setting]:.2f} "
                f"| {s['pretrained_above_random_twin'][setting]}/4 "
                f"| {s['score_seconds_per_model'][setting]:.2f} | {', '.join(order)} |"
            )
        lines += ["", "θ per model:", "", "| model | " + " | ".join(s["theta"]) + " |"]
        lines.append("|---|" + "---|" * len(s["theta"]))
        for model in result["models"]:  # type: ignore[union-attr]
            row = " | ".join(f"{s['theta'][setting][model]:+.4f}" for setting in s["theta"])
            lines.append(f"| {model} | {row} |")
        lines.append("")
    fwd = result["forward_seconds"]
    lines += [
        "Forward pass seconds per model (taps kept for the largest images-per-class): "
        + ", ".join(f"{k} {v:.1f}" for k, v in fwd.items()),  # type: ignore[union-attr]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--images-per-class", default="3,5,10")
    parser.add_argument("--scores", default=",".join(SCORES), help="Betti scores (lower is better)")
    parser.add_argument("--out", default="betti_invariance", help="results file stem")
    args = parser.parse_args()
    result = run(
        [int(s) for s in args.sizes.split(",")],  # 0: the model's own resolution
        [int(k) for k in args.images_per_class.split(",")],
        args.scores.split(","),
    )
    result["command"] = "python benchmarks/betti/invariance.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
