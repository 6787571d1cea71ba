"""What the demo's job costs in scores against forward passes (``python -m benchmarks.job_cost``).

The demo's job, in-process: the 8 offline models on ``builtin:digits`` at the job defaults
(:class:`zoorank.rank.RankOptions`), features cached (a first pass fills the cache, and is not
timed). Per model, the forward pass is the time it took when it was made (stored with the
features); the score time is the wall time of everything else ``score_model`` does on a cache
hit (every score, and the resamples of the ranking's uncertainty). Two score sets:

* ``default`` -- what a job that names no scores computes now (the released default's scores);
* ``every non-expensive score`` -- what a default job computed before issue 21.

Writes ``benchmarks/results/job_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from zoorank.settings import enter_offline_by_default

OUT = Path("benchmarks/results")
CACHE = Path("benchmarks/cache/job_cost")


def measure(score_names: list[str], *, repeats: int = 2) -> dict[str, Any]:
    import torch
    from threadpoolctl import threadpool_limits

    from zoorank.features.cache import FeatureCache
    from zoorank.rank import RankOptions, prepare_dataset, resolve_models, score_model, summarise

    torch.set_num_threads(1)
    options = RankOptions(device="cpu")
    prepared = prepare_dataset("builtin:digits", options)
    cache = FeatureCache(CACHE)
    specs = resolve_models(None)
    with threadpool_limits(limits=1):
        for spec in specs:  # fill the cache (untimed)
            score_model(prepared, spec, score_names, options, cache=cache)
        best: dict[str, Any] | None = None
        for _ in range(repeats):
            per_model = {}
            results = []
            for spec in specs:
                began = time.perf_counter()
                result = score_model(prepared, spec, score_names, options, cache=cache)
                per_model[spec.name] = {
                    "forward_seconds": result.feature_seconds,
                    "score_seconds": time.perf_counter() - began,
                    "from_cache": result.from_cache,
                }
                results.append(result)
            began = time.perf_counter()
            summarise(results, score_names)
            rank_seconds = time.perf_counter() - began
            total = sum(m["score_seconds"] for m in per_model.values()) + rank_seconds
            if best is None or total < best["score_seconds"]:
                best = {
                    "scores": score_names,
                    "per_model": per_model,
                    "rank_seconds": rank_seconds,
                    "score_seconds": total,
                    "forward_seconds": sum(m["forward_seconds"] for m in per_model.values()),
                }
    assert best is not None
    best["ratio"] = best["score_seconds"] / best["forward_seconds"]
    return best


def main(argv: list[str] | None = None) -> int:
    enter_offline_by_default()
    from zoorank.policy import DEFAULT_RANKING
    from zoorank.scores import get_score, list_scores

    parser = argparse.ArgumentParser(prog="python -m benchmarks.job_cost", description=__doc__)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the fastest is kept")
    args = parser.parse_args(argv)
    every_cheap = [n for n in list_scores() if get_score(n).cost != "expensive"]
    rows = {
        f"default ({DEFAULT_RANKING.name})": measure(list(DEFAULT_RANKING.scores), repeats=args.repeats),
        "every non-expensive score (a default job before issue 21)": measure(
            every_cheap, repeats=args.repeats
        ),
    }
    payload = {
        "command": "python -m benchmarks.job_cost",
        "machine": f"{os.cpu_count()} cores, 1 torch thread, 1 BLAS thread",
        "rows": rows,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "job_cost.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        "# The demo's job: score time against forward-pass time",
        "",
        "`python -m benchmarks.job_cost`: 8 offline models on builtin:digits, 50 images per class at"
        " 64 px, features cached; score time = every score and the ranking's resamples on a cache"
        " hit, summed over models, plus the ranking; forward = the passes' own time when made."
        f" {payload['machine']}; the fastest of {args.repeats} passes.",
        "",
        "| score set | scores | score seconds | forward seconds | score / forward |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {len(row['scores'])} | {row['score_seconds']:.1f} | {row['forward_seconds']:.1f} |"
            f" {row['ratio']:.2f} |"
        )
    (OUT / "job_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
