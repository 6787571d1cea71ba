"""Betti decay on real feature maps: the score vs plain persistence loops on the same arrays.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/betti/score_speed.py [--size 64]
[--images-per-class 5] [--models tf_efficientnet_lite0,mobilenetv2_100]``
Writes ``benchmarks/results/betti_score_speed.{json,md}``.

Taps come from the real pipeline (``zoorank.rank.get_features``: offline ImageNet weights,
``builtin:digits``, 10 classes). For each model:

* the score ``betti_decay`` (η = 0.5, all cores, stacked labelling) -- seconds and
  images·taps per second;
* a plain single-process gudhi loop: per image and tap ``CubicalComplex(vertices=...)``,
  persistence, the authors' count ``b ≤ η ≤ d`` -- on a subset of images, rate extrapolated;
* the same loop with CubicalRipser (``cripser.computePH(maxdim=2)``, the authors' tool);
* a check that the loops' class-balanced Ω equals the score's Ω on the subset.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cripser
import gudhi
import numpy as np

from zoorank.features.cache import FeatureCache
from zoorank.rank import RankOptions, get_features, prepare_dataset
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores.betti import class_balanced_betti, prepare_taps
from zoorank.topology import betti_from_intervals
from zoorank.topology.batch import usable_cores
from zoorank.zoo import get_model_spec

RESULTS = Path(__file__).resolve().parents[1] / "results"
ETA = 0.5


def taps_for(model: str, size: int, per_class: int, cache_dir: str) -> ScoreInputs:
    options = RankOptions(samples_per_class=per_class, input_size=size, tap_images_per_class=per_class)
    prepared = prepare_dataset("builtin:digits", options)
    features, _, _ = get_features(prepared, get_model_spec(model), options, FeatureCache(cache_dir))
    return ScoreInputs(labels=prepared.labels, taps=features.taps, tap_rows=features.tap_rows)


def gudhi_betti(volume: np.ndarray) -> np.ndarray:
    complex_ = gudhi.CubicalComplex(vertices=volume.astype(np.float64))
    complex_.compute_persistence(homology_coeff_field=2)
    intervals = [np.asarray(complex_.persistence_intervals_in_dimension(k)).reshape(-1, 2) for k in range(3)]
    return betti_from_intervals(intervals, ETA)


def cripser_betti(volume: np.ndarray) -> np.ndarray:
    table = cripser.computePH(volume.astype(np.float64), maxdim=2)
    return betti_from_intervals([table[table[:, 0] == k][:, 1:3] for k in range(3)], ETA)


def loop(
    method: Callable[[np.ndarray], np.ndarray], inputs: ScoreInputs, rows: np.ndarray
) -> tuple[float, np.ndarray]:
    """Seconds and class-balanced Ω of a one-array-at-a-time loop over ``rows`` (tap positions)."""
    labels = inputs.labels[inputs.tap_rows[rows]]
    start = time.perf_counter()
    sums = np.array([[method(maps[i]).sum() for i in rows] for maps in inputs.taps.values()])
    seconds = time.perf_counter() - start
    omega = np.mean([sums[:, labels == c].mean(axis=1) for c in np.unique(labels)], axis=0)
    return seconds, omega


def run(models: list[str], size: int, per_class: int, subset_per_class: int) -> dict[str, object]:
    cache_dir = os.environ.get("ZOORANK_BENCH_CACHE", os.path.join(tempfile.gettempdir(), "zoorank-bench"))
    rows_out = []
    for model in models:
        inputs = taps_for(model, size, per_class, cache_dir)
        names = list(inputs.taps)
        m = len(inputs.tap_rows)
        spec = get_score("betti_decay")
        spec(inputs, eta=ETA)  # warm-up (imports, thread pool)
        start = time.perf_counter()
        out = spec(inputs, eta=ETA)
        score_seconds = time.perf_counter() - start
        # The Betti sums alone, in threads on every core (the score's default is one thread).
        prepared_taps = prepare_taps(inputs, images_per_class=per_class, max_taps=0)
        start = time.perf_counter()
        class_balanced_betti(prepared_taps, [np.array([ETA])] * len(names), workers=0)
        threads_seconds = time.perf_counter() - start
        # The same score restricted to a class-balanced subset, compared with the loops.
        labels = inputs.labels[inputs.tap_rows]
        subset = np.sort(
            np.concatenate([np.flatnonzero(labels == c)[:subset_per_class] for c in np.unique(labels)])
        )
        sub_inputs = ScoreInputs(
            labels=inputs.labels,
            taps={k: v[subset] for k, v in inputs.taps.items()},
            tap_rows=inputs.tap_rows[subset],
        )
        sub_omega = np.array([t["omega"] for t in spec(sub_inputs, eta=ETA).details["taps"]])
        gudhi_seconds, gudhi_omega = loop(gudhi_betti, inputs, subset)
        cripser_seconds, cripser_omega = loop(cripser_betti, inputs, subset)
        image_taps = m * len(names)
        sub_image_taps = subset.size * len(names)
        row = {
            "model": model,
            "input_size": size,
            "taps": len(names),
            "tap_shapes": [list(v.shape[1:]) for v in inputs.taps.values()],
            "images": m,
            "voxels_per_image": int(sum(np.prod(v.shape[1:]) for v in inputs.taps.values())),
            "theta": out.value,
            "score_seconds": score_seconds,
            "score_image_taps_per_s": image_taps / score_seconds,
            "betti_threads_image_taps_per_s": image_taps / threads_seconds,
            "loop_images": int(subset.size),
            "gudhi_loop_image_taps_per_s": sub_image_taps / gudhi_seconds,
            "cripser_loop_image_taps_per_s": sub_image_taps / cripser_seconds,
            "omega_identical_gudhi": bool(np.allclose(sub_omega, gudhi_omega, rtol=0, atol=1e-9)),
            "omega_identical_cripser": bool(np.allclose(sub_omega, cripser_omega, rtol=0, atol=1e-9)),
        }
        row["speedup_vs_gudhi_loop"] = row["score_image_taps_per_s"] / row["gudhi_loop_image_taps_per_s"]
        row["speedup_vs_cripser_loop"] = row["score_image_taps_per_s"] / row["cripser_loop_image_taps_per_s"]
        row["threads_speedup_vs_cripser_loop"] = (
            row["betti_threads_image_taps_per_s"] / row["cripser_loop_image_taps_per_s"]
        )
        print(row, flush=True)
        rows_out.append(row)
    return {
        "benchmark": "betti_score_speed",
        "eta": ETA,
        "dataset": "builtin:digits",
        "images_per_class": per_class,
        "cores": usable_cores(),
        "loadavg_at_end": os.getloadavg(),
        "models": rows_out,
    }


def to_markdown(result: dict[str, object]) -> str:
    lines = [
        "# Betti decay on real taps: score vs one-array-at-a-time persistence loops",
        "",
        f"`builtin:digits`, {result['images_per_class']} images per class, η = {result['eta']}, "
        f"{result['cores']} cores (shared; load average at end {result['loadavg_at_end']}). "
        "The score runs on one thread (its default: cc3d holds the GIL, threads do not pay); "
        "'Betti sums, threads' is the labelling part alone on a thread per core; the loops are "
        "single-process. Ω of the loops equals the score's on the loop subset when 'identical' is True.",
        "",
        "| model | px | taps | images | voxels/image | score s | score img·taps/s "
        "| Betti sums, threads | gudhi loop img·taps/s | cripser loop img·taps/s | × gudhi "
        "| × cripser | × cripser, threads | identical |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["models"]:  # type: ignore[union-attr]
        lines.append(
            f"| {r['model']} | {r['input_size']} | {r['taps']} | {r['images']} "
            f"| {r['voxels_per_image']} "
            f"| {r['score_seconds']:.2f} | {r['score_image_taps_per_s']:.0f} "
            f"| {r['betti_threads_image_taps_per_s']:.0f} "
            f"| {r['gudhi_loop_image_taps_per_s']:.1f} | {r['cripser_loop_image_taps_per_s']:.0f} "
            f"| {r['speedup_vs_gudhi_loop']:.0f} | {r['speedup_vs_cripser_loop']:.1f} "
            f"| {r['threads_speedup_vs_cripser_loop']:.1f} "
            f"| {r['omega_identical_gudhi'] and r['omega_identical_cripser']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tf_efficientnet_lite0,mobilenetv2_100")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images-per-class", type=int, default=5)
    parser.add_argument("--loop-images-per-class", type=int, default=1)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    result = run(args.models.split(","), args.size, args.images_per_class, args.loop_images_per_class)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"betti_score_speed{args.tag}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
