"""Seconds per transferability baseline on one model's worth of cached features.

n = 5000 samples, d = 2048 pre-logit features, 10 target classes, k = 1000 source logits by
default: a ResNet-50 on a 5000-image target set. Every registered baseline or prior that
reads only arrays (needs within features, logits, meta) is timed on the same seeded arrays
(``--scores`` picks others). BLAS is
limited to ``--threads`` threads (default 1); pin the process to a core as well, e.g.

    taskset -c 0 .venv/bin/python -m benchmarks.baselines_speed

Optionally, the authors' LogME (thuml/LogME ``LogME.py``, which needs numba) is timed on
the same arrays in a separate interpreter: ``--authors-logme PATH/TO/LogME.py
--authors-python PYTHON``. Its code is run from where it is, never copied here.

Writes ``benchmarks/results/baselines_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from zoorank.scores import ScoreInputs, get_score, list_scores

ARRAY_NEEDS = frozenset({"features", "logits", "meta"})
FAMILIES = frozenset({"baseline", "prior"})
RESULTS = Path(__file__).resolve().parent / "results"

# Run in the authors' interpreter: loads their LogME.py by path, times fit() on the arrays.
_AUTHORS_SNIPPET = """
import importlib.util, json, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("authors_logme", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
times, value = [], None
for _ in range(int(sys.argv[4])):
    start = time.perf_counter(); value = module.LogME(regression=False).fit(x, y)
    times.append(time.perf_counter() - start)
print(json.dumps({"seconds": min(times), "all_seconds": times, "value": float(value)}))
"""


def make_inputs(n: int, d: int, classes: int, source_classes: int, seed: int) -> ScoreInputs:
    """Blobs that overlap (class means ~3 noise s.d. apart) and logits that half know y."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % classes)
    centres = rng.standard_normal((classes, d))
    features = rng.standard_normal((n, d)) + 0.05 * centres[labels]
    source = rng.integers(0, source_classes, classes)[labels]
    logits = 2.0 * rng.standard_normal((n, source_classes))
    logits[np.arange(n), source] += 3.0
    return ScoreInputs(
        labels=labels,
        features=features.astype(np.float32),
        logits=logits.astype(np.float32),
        meta={"imagenet_top1": 76.1},
        seed=seed,
    )


def time_score(name: str, inputs: ScoreInputs, repeats: int) -> dict[str, Any]:
    spec = get_score(name)
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = spec(inputs).value
        times.append(time.perf_counter() - start)
    return {"score": name, "cost": spec.cost, "seconds": min(times), "value": value}


def time_authors_logme(
    python: str, logme_path: str, inputs: ScoreInputs, repeats: int, threads: int
) -> dict[str, Any]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    assert inputs.features is not None
    with tempfile.TemporaryDirectory() as tmp:
        x_path, y_path = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(x_path, inputs.features)
        np.save(y_path, inputs.labels)
        completed = subprocess.run(
            [python, "-c", _AUTHORS_SNIPPET, logme_path, str(x_path), str(y_path), str(repeats)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["source"] = f"{logme_path} (LogME(regression=False).fit, numba)"
    return result


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        "# Baseline scores: seconds per model",
        "",
        f"n = {cfg['n']}, d = {cfg['d']}, {cfg['classes']} classes, k = {cfg['source_classes']} "
        f"logits (float32 inputs), BLAS threads = {cfg['threads']}, best of {cfg['repeats']}; "
        f"{report['machine']['processor']}, load average at start "
        f"{report['machine']['load_average_start']}.",
        "",
        "| score | cost class | seconds | value |",
        "|---|---|---:|---:|",
    ]
    for row in report["results"]:
        lines.append(f"| {row['score']} | {row['cost']} | {row['seconds']:.2f} | {row['value']:.6g} |")
    authors = report.get("authors_logme")
    if authors:
        lines += [
            "",
            f"Authors' LogME on the same arrays: {authors['seconds']:.2f} s, value "
            f"{authors['value']:.12g} (zoorank: {report['logme_value']:.12g}, relative "
            f"difference {authors['relative_difference']:.1e}).",
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--source-classes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scores", default="", help="comma-separated names (default: all)")
    parser.add_argument("--authors-logme", default="", help="path to thuml/LogME LogME.py")
    parser.add_argument("--authors-python", default="", help="interpreter with numba for it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    names = [s for s in args.scores.split(",") if s] or [
        name
        for name in list_scores()
        if get_score(name).needs <= ARRAY_NEEDS and get_score(name).family in FAMILIES
    ]
    inputs = make_inputs(args.n, args.d, args.classes, args.source_classes, args.seed)
    report: dict[str, Any] = {
        "config": {
            "n": args.n,
            "d": args.d,
            "classes": args.classes,
            "source_classes": args.source_classes,
            "seed": args.seed,
            "repeats": args.repeats,
            "threads": args.threads,
        },
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "load_average_start": [round(v, 2) for v in os.getloadavg()],
            "python": sys.version.split()[0],
            "numpy": np.__version__,
        },
        "results": [],
    }
    with threadpool_limits(limits=args.threads):
        for name in names:
            row = time_score(name, inputs, args.repeats)
            report["results"].append(row)
            print(f"{name:24s} {row['seconds']:8.2f} s   {row['value']:.6g}", flush=True)
    report["logme_value"] = next((r["value"] for r in report["results"] if r["score"] == "logme"), None)
    if args.authors_logme and args.authors_python:
        authors = time_authors_logme(
            args.authors_python, args.authors_logme, inputs, args.repeats, args.threads
        )
        if report["logme_value"] is not None:
            authors["relative_difference"] = abs(authors["value"] - report["logme_value"]) / abs(
                authors["value"]
            )
        report["authors_logme"] = authors
        print(f"{'authors LogME':24s} {authors['seconds']:8.2f} s   {authors['value']:.12g}")
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baselines_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "baselines_speed.md").write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
