"""Which Betti-profile statistic orders pretrained models above their random twins, and how
well does it rank the ranking benchmark's pool? (issue 4, "variants")

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.betti.variants [--analyse-only]``
Writes ``benchmarks/results/betti_variants.{json,md}``.

Collect: for the 21-model pool and the two targets of ``benchmarks/results/ranking.json``
(same zoo, same train split, same cached features: ``python -m benchmarks.ranking`` options),
the class-balanced per-tap Betti numbers ``(β0, β1, β2)`` at several threshold schemes, all at
once: raw thresholds η (the paper's), per-tap quantiles of the tap's activations, and per-tap
``mean + k·std``. A stored ``logme`` value is recomputed per model as a check that the
rebuilt zoo and features are those the ground truth was measured on.

Analyse: each (threshold, statistic of the profile) pair is a candidate score; for each it
reports the twin check (pretrained above its random-init twin, 5 pairs per target) and weighted
Kendall τ against the stored fine-tuned accuracies. The candidates were chosen before looking
at the results; every one of them is reported, not only the winner -- picking the best of many
on the same 21 models is optimistic, which is why the twin check of the chosen statistic is
repeated at other input sizes in ``benchmarks/betti/invariance.py`` (no ground truth needed).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoorank.settings import enter_offline_by_default

RESULTS = Path("benchmarks/results")
RAW_ETAS = (0.0, 0.5, 1.0)
QUANTILES = (0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95)
STD_STEPS = (1.0,)

log = logging.getLogger("betti.variants")


def schemes() -> list[str]:
    return (
        [f"eta={e:g}" for e in RAW_ETAS]
        + [f"q={q:g}" for q in QUANTILES]
        + [f"mean+{k:g}std" for k in STD_STEPS]
    )


def tap_thresholds(maps: np.ndarray) -> np.ndarray:
    """``(len(schemes()),)`` thresholds for one tap ``(k, c, h, w)``, in :func:`schemes` order."""
    from zoorank.scores.betti import tap_quantiles

    flat = maps.astype(np.float64).ravel()
    return np.concatenate(
        [
            np.asarray(RAW_ETAS, dtype=np.float64),
            tap_quantiles(maps, np.asarray(QUANTILES)),
            flat.mean() + np.asarray(STD_STEPS) * flat.std(),
        ]
    )


def collect(out: Path, input_size: int | None) -> dict[str, Any]:
    from dataclasses import replace

    from threadpoolctl import threadpool_limits

    from zoorank.features.cache import FeatureCache
    from zoorank.rank import get_features, resolve_models, run_score, score_inputs
    from zoorank.scores.betti import class_balanced_betti, prepare_taps

    from ..ranking.config import BenchConfig
    from ..ranking.run import rank_options, stored_pool, train_split

    config = BenchConfig()
    stored = json.loads((config.out_dir / "ranking.json").read_text())
    models = stored_pool(config)
    options = replace(rank_options(config), input_size=input_size or config.train.input_size)
    cache = FeatureCache(config.cache_dir / "features")
    payload: dict[str, Any] = {"schemes": schemes(), "input_size": options.input_size, "targets": {}}
    for ref, target in stored["targets"].items():
        prepared = train_split(config, ref)
        if input_size:  # taps at another resolution: the tap images only, as the pipeline does
            prepared = prepared.tap_images_only()
        profiles: dict[str, Any] = {}
        for model in models:
            spec = resolve_models([model.ref])[0]
            features, _, _ = get_features(prepared, spec, options, cache)
            inputs = score_inputs(prepared.labels, features, spec, options.seed)
            started = time.perf_counter()
            with threadpool_limits(limits=config.blas_threads):
                logme = run_score("logme", inputs, {}).value if not input_size else float("nan")
                taps = prepare_taps(inputs, images_per_class=5, max_taps=0)
                betti = class_balanced_betti(taps, [tap_thresholds(maps) for maps in taps.maps])
            stored_logme = target["scores"][model.label]["logme"]
            profiles[model.label] = {
                "kind": model.kind,
                "architecture": model.architecture,
                "depth": (taps.depth_index / float(taps.total_taps - 1)).tolist(),
                "betti": np.stack(betti).tolist(),  # (L, schemes, 3)
                "logme": logme,
                "logme_stored": stored_logme,
                "seconds": time.perf_counter() - started,
            }
            log.info("%s %s: logme %.6f (stored %.6f)", ref, model.label, logme, stored_logme)
        payload["targets"][ref] = profiles
    (out / f"{stem(input_size)}_profiles.json").write_text(json.dumps(payload) + "\n")
    return payload


# Statistics of a profile y (L,) over depth x in [0, 1]; every one is "lower = better".
def _slope(x: np.ndarray, y: np.ndarray) -> float:
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def stat_slope(x: np.ndarray, omega: np.ndarray) -> float:
    """Least-squares slope of Ω/‖Ω‖ over depth (``betti_slope``)."""
    return _slope(x, omega / np.linalg.norm(omega))


def stat_late_slope(x: np.ndarray, omega: np.ndarray) -> float:
    """The slope over the second half of the network only (x ≥ 0.5)."""
    late = x >= 0.5
    return _slope(x[late], omega[late] / np.linalg.norm(omega))


def stat_last_over_peak(x: np.ndarray, omega: np.ndarray) -> float:
    """Ω at the last tap over the largest Ω: how much of the peak topology survives."""
    return float(omega[-1] / omega.max())


def stat_late_over_early(x: np.ndarray, omega: np.ndarray) -> float:
    """log of mean Ω over the last third over mean Ω over the first third."""
    return float(np.log((omega[x >= 2 / 3].mean() + 1e-12) / (omega[x <= 1 / 3].mean() + 1e-12)))


def stat_log_slope(x: np.ndarray, omega: np.ndarray) -> float:
    """Slope of log(1 + Ω) over depth: a decay rate, not a difference of normalised values."""
    return _slope(x, np.log1p(omega))


STATISTICS = {
    "slope": stat_slope,
    "late_slope": stat_late_slope,
    "last_over_peak": stat_last_over_peak,
    "late_over_early": stat_late_over_early,
    "log_slope": stat_log_slope,
}
DEGREES = {"sum": slice(0, 3), "b0": slice(0, 1), "b1": slice(1, 2)}


def analyse(payload: dict[str, Any], ranking: dict[str, Any]) -> dict[str, Any]:
    from zoorank.groundtruth.agreement import count_above_twin, weighted_tau

    rows = []
    for ref, profiles in payload["targets"].items():
        truth = {t["model"]: t["accuracy"] for t in ranking["targets"][ref]["ground_truth"]}
        randoms = {p["architecture"]: m for m, p in profiles.items() if p["kind"] == "random"}
        twins = {
            m: randoms[p["architecture"]]
            for m, p in profiles.items()
            if p["kind"] != "random" and p["architecture"] in randoms
        }
        for s, scheme in enumerate(payload["schemes"]):
            for degree, part in DEGREES.items():
                for stat_name, stat in STATISTICS.items():
                    values: dict[str, float | None] = {}
                    for model, p in profiles.items():
                        omega = np.asarray(p["betti"])[:, s, part].sum(axis=1)
                        x = np.asarray(p["depth"])
                        values[model] = None if not omega.any() else stat(x, omega)
                    have = [m for m, v in values.items() if v is not None and np.isfinite(v)]
                    score = -np.array([values[m] for m in have], dtype=np.float64)
                    accuracy = np.array([truth[m] for m in have])
                    twin = count_above_twin(values, "lower", twins)
                    rows.append(
                        {
                            "target": ref,
                            "threshold": scheme,
                            "degree": degree,
                            "statistic": stat_name,
                            "n": len(have),
                            "weighted_tau": weighted_tau(score, accuracy) if len(have) > 2 else None,
                            "above_twin": twin["above"],
                            "pairs": twin["pairs"],
                        }
                    )
    return {"rows": rows}


def markdown(result: dict[str, Any], payload: dict[str, Any]) -> str:
    targets = list(payload["targets"])
    keyed: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for row in result["rows"]:
        keyed.setdefault((row["threshold"], row["degree"], row["statistic"]), {})[row["target"]] = row
    checks = []
    for ref, profiles in payload["targets"].items():
        worst = max(abs(p["logme"] - p["logme_stored"]) for p in profiles.values())
        if np.isfinite(worst):
            checks.append(f"{ref}: max |logme − stored| = {worst:.2e}")
    lines = [
        "# Betti-profile variants: twin check and weighted τ on the ranking benchmark's pool",
        "",
        "`python -m benchmarks.betti.variants` (profiles cached; `--analyse-only` re-reads them). "
        f"Taps at {payload.get('input_size', 32)} px. "
        "Pool, split and ground truth: `benchmarks/results/ranking.json`. "
        "5 images per class, authors' rule. Every candidate is listed; lower value = better. "
        "`twins`: pretrained above its random-init twin (4 ImageNet + re-initialised top). "
        "Reproduction check (same zoo and features as the ground truth): " + "; ".join(checks) + ".",
        "",
        "| threshold | Betti | statistic | "
        + " | ".join(f"{t} wτ | {t} twins" for t in targets)
        + " | twins total | mean wτ |",
        "|---|---|---|" + "---|---|" * len(targets) + "---|---|",
    ]
    ordered = sorted(
        keyed.items(),
        key=lambda kv: (
            -sum(r["above_twin"] for r in kv[1].values()),
            -float(np.mean([r["weighted_tau"] or -1 for r in kv[1].values()])),
        ),
    )
    for (threshold, degree, stat), per_target in ordered:
        cells = []
        for t in targets:
            r = per_target[t]
            tau = "–" if r["weighted_tau"] is None else f"{r['weighted_tau']:+.3f}"
            cells.append(f"{tau} | {r['above_twin']}/{r['pairs']}")
        total = sum(r["above_twin"] for r in per_target.values())
        pairs = sum(r["pairs"] for r in per_target.values())
        mean_tau = np.mean([r["weighted_tau"] or np.nan for r in per_target.values()])
        lines.append(
            f"| {threshold} | {degree} | {stat} | "
            + " | ".join(cells)
            + f" | {total}/{pairs} | {mean_tau:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def stem(input_size: int | None) -> str:
    return "betti_variants" + (f"_{input_size}px" if input_size else "")


def main() -> None:
    enter_offline_by_default()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--analyse-only", action="store_true")
    parser.add_argument(
        "--input-size", type=int, help="taps at this resolution (default: the benchmark's, 32 px)"
    )
    args = parser.parse_args()
    name = stem(args.input_size)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    profiles_path = RESULTS / f"{name}_profiles.json"
    payload = (
        json.loads(profiles_path.read_text()) if args.analyse_only else collect(RESULTS, args.input_size)
    )
    ranking = json.loads((RESULTS / "ranking.json").read_text())
    result = analyse(payload, ranking)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result, payload))
    print((RESULTS / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
