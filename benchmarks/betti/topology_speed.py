"""Betti numbers at a threshold: fast path vs gudhi vs CubicalRipser, same arrays, same answers.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/betti/topology_speed.py [--quick]``
Writes ``benchmarks/results/betti_topology.{json,md}``.

Arrays: Gaussian-smoothed (σ = 1 voxel) white noise, standardised, float32, shapes 8³ to
64×32×32; thresholds η = −0.5, 0, 0.5 (in units of the array's std) and one *tie* threshold
equal to the array's median voxel value (exercises the exact tie correction). Every method's
Betti numbers (authors' closed rule ``b ≤ η ≤ d``) must agree, or the script fails.

Timings are the minimum over repeats of single-threaded calls (this machine's 2 cores are
shared, so minima are the stable statistic); a threaded run measures throughput on all cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cripser
import gudhi
import numpy as np
from scipy import ndimage

from zoorank.topology import betti_from_intervals, betti_numbers
from zoorank.topology.batch import stacked_betti_sum, usable_cores

SHAPES = [(8, 8, 8), (16, 16, 16), (32, 32, 32), (64, 16, 16), (64, 32, 32)]
THRESHOLDS = [-0.5, 0.0, 0.5]
RESULTS = Path(__file__).resolve().parents[1] / "results"


def smooth_volume(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=shape), 1.0)
    return ((field - field.mean()) / field.std()).astype(np.float32)


def best_seconds(fn: Callable[[], object], *, repeats: int, inner: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def cripser_intervals(volume: np.ndarray) -> list[np.ndarray]:
    table = cripser.computePH(volume.astype(np.float64), maxdim=2)
    return [table[table[:, 0] == k][:, 1:3] for k in range(3)]


def gudhi_intervals(volume: np.ndarray) -> list[np.ndarray]:
    complex_ = gudhi.CubicalComplex(vertices=volume.astype(np.float64))
    complex_.compute_persistence(homology_coeff_field=2)
    return [np.asarray(complex_.persistence_intervals_in_dimension(k)).reshape(-1, 2) for k in range(3)]


def run(quick: bool) -> dict[str, object]:
    rng = np.random.default_rng(0)
    arrays_per_shape = 2 if quick else 4
    rows = []
    for shape in SHAPES:
        volumes = [smooth_volume(rng, shape) for _ in range(arrays_per_shape)]
        agree = True
        t_fast, t_tie, t_cripser, t_gudhi = [], [], [], []
        for volume in volumes:
            tie = float(np.sort(volume.ravel())[volume.size // 2])  # a voxel value: a tie
            from_cripser = cripser_intervals(volume)
            from_gudhi = gudhi_intervals(volume)
            for eta in [*THRESHOLDS, tie]:
                fast = betti_numbers(volume, eta).tolist()
                agree &= fast == betti_from_intervals(from_cripser, eta).tolist()
                agree &= fast == betti_from_intervals(from_gudhi, eta).tolist()
            inner = max(1, int(2e5 // volume.size))
            t_fast.append(
                best_seconds(
                    lambda v=volume: [betti_numbers(v, eta) for eta in THRESHOLDS],
                    repeats=5,
                    inner=inner,
                )
                / len(THRESHOLDS)
            )
            t_tie.append(best_seconds(lambda v=volume, e=tie: betti_numbers(v, e), repeats=5, inner=inner))
            t_cripser.append(best_seconds(lambda v=volume: cripser_intervals(v), repeats=3, inner=1))
            if volume.size <= 32**3 or not quick:
                t_gudhi.append(best_seconds(lambda v=volume: gudhi_intervals(v), repeats=1, inner=1))
        # As the score stacks them: up to 2**18 voxels of one shape per labelling call.
        copies = max(1, (1 << 18) // (volume.size * len(volumes)))
        stack = np.stack(volumes * copies)
        t_stacked = best_seconds(
            lambda: stacked_betti_sum(stack, THRESHOLDS), repeats=5, inner=max(1, inner // (4 * copies))
        ) / (len(stack) * len(THRESHOLDS))
        if not agree:
            raise SystemExit(f"Betti numbers disagree on shape {shape}")
        fast_ms = 1e3 * float(np.median(t_fast))
        cripser_ms = 1e3 * float(np.median(t_cripser))
        gudhi_ms = 1e3 * float(np.median(t_gudhi)) if t_gudhi else None
        rows.append(
            {
                "shape": list(shape),
                "arrays": len(volumes),
                "identical_betti": agree,
                "fast_ms_per_threshold": fast_ms,
                "fast_ms_at_a_tie": 1e3 * float(np.median(t_tie)),
                "stacked_ms_per_threshold_per_array": 1e3 * t_stacked,
                "speedup_stacked_vs_cripser_one_threshold": cripser_ms / (1e3 * t_stacked),
                "cripser_ms_per_array": cripser_ms,
                "gudhi_ms_per_array": gudhi_ms,
                "speedup_vs_cripser_one_threshold": cripser_ms / fast_ms,
                "speedup_vs_cripser_three_thresholds": cripser_ms / (3 * fast_ms),
                "speedup_vs_gudhi_one_threshold": gudhi_ms / fast_ms if gudhi_ms else None,
            }
        )
        print(rows[-1], flush=True)

    # Throughput on all cores, threads, the largest shape: fast path vs cripser.
    workers = usable_cores()
    volumes = [smooth_volume(rng, (64, 32, 32)) for _ in range(8 if quick else 24)]

    def throughput(fn: Callable[[np.ndarray], object]) -> float:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fn, volumes[:workers]))
            start = time.perf_counter()
            list(pool.map(fn, volumes))
            return len(volumes) / (time.perf_counter() - start)

    start = time.perf_counter()
    for volume in volumes:
        betti_numbers(volume, 0.5)
    serial_rate = len(volumes) / (time.perf_counter() - start)
    fast_rate = throughput(lambda v: betti_numbers(v, 0.5))
    cripser_rate = throughput(lambda v: cripser.computePH(v.astype(np.float64), maxdim=2))
    return {
        "benchmark": "betti_topology",
        "machine": {
            "cores": workers,
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
            "cripser": cripser.__version__,
            "gudhi": gudhi.__version__,
        },
        "rule": "closed (b <= eta <= d), thresholds -0.5, 0, 0.5 std and a tie at the median",
        "per_shape": rows,
        "threads_64x32x32": {
            "workers": workers,
            "fast_arrays_per_s_one_thread": serial_rate,
            "fast_arrays_per_s": fast_rate,
            "thread_scaling": fast_rate / serial_rate,
            "cripser_arrays_per_s": cripser_rate,
            "speedup": fast_rate / cripser_rate,
        },
    }


def to_markdown(result: dict[str, object]) -> str:
    lines = [
        "# Betti numbers at a threshold: fast path vs gudhi vs CubicalRipser",
        "",
        "Smoothed random float32 volumes (σ = 1 voxel), authors' rule `b ≤ η ≤ d`, "
        'η ∈ {−0.5, 0, 0.5}·std plus a tie at the median voxel. "stacked": copies of the arrays '
        "of a shape, up to 2¹⁸ voxels, "
        "labelled in one call, as the score does. Single-thread minima of "
        "repeats; median over arrays. `python benchmarks/betti/topology_speed.py`.",
        "",
        "| shape | identical | fast ms/η | fast ms at a tie | stacked ms/η/array | cripser ms "
        "| gudhi ms | × cripser (1 η) | × cripser (3 η) | × cripser stacked (1 η) "
        "| × gudhi (1 η) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["per_shape"]:  # type: ignore[union-attr]
        gudhi_ms = row["gudhi_ms_per_array"]
        vs_gudhi = row["speedup_vs_gudhi_one_threshold"]
        lines.append(
            f"| {'×'.join(map(str, row['shape']))} | {row['identical_betti']} "
            f"| {row['fast_ms_per_threshold']:.3f} | {row['fast_ms_at_a_tie']:.3f} "
            f"| {row['stacked_ms_per_threshold_per_array']:.3f} "
            f"| {row['cripser_ms_per_array']:.2f} "
            f"| {'' if gudhi_ms is None else f'{gudhi_ms:.1f}'} "
            f"| {row['speedup_vs_cripser_one_threshold']:.1f} "
            f"| {row['speedup_vs_cripser_three_thresholds']:.1f} "
            f"| {row['speedup_stacked_vs_cripser_one_threshold']:.1f} "
            f"| {'' if vs_gudhi is None else f'{vs_gudhi:.0f}'} |"
        )
    threads = result["threads_64x32x32"]
    lines += [
        "",
        f"Threads on all {threads['workers']} cores, 64×32×32: fast path "  # type: ignore[index]
        f"{threads['fast_arrays_per_s']:.0f} arrays/s vs CubicalRipser "  # type: ignore[index]
        f"{threads['cripser_arrays_per_s']:.0f} arrays/s "  # type: ignore[index]
        f"(× {threads['speedup']:.1f}); the fast path on one thread: "  # type: ignore[index]
        f"{threads['fast_arrays_per_s_one_thread']:.0f} arrays/s "  # type: ignore[index]
        f"(threads scale × {threads['thread_scaling']:.2f}).",  # type: ignore[index]
        "",
        f"Machine: {result['machine']}",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer arrays (a smoke run)")
    args = parser.parse_args()
    result = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "betti_topology.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "betti_topology.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
