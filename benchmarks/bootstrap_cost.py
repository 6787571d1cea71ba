"""What the ranking's resamples add to a default job: ``zoorank rank`` on the demo's job (the
8-model offline zoo on builtin:digits, every default score, job defaults) with the features
cached, with and without the resamples, alternating, ``--repeats`` times each.

    python benchmarks/bootstrap_cost.py [--repeats 3]

Writes ``benchmarks/results/bootstrap_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from zoorank.settings import enter_offline_by_default


def main() -> None:
    enter_offline_by_default()
    from zoorank.rank import RankOptions, rank

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="zoorank-bootcost-"))
    rank("builtin:digits", options=RankOptions(bootstrap_resamples=0), cache_dir=cache)  # warm the cache
    times: dict[int, list[float]] = {0: [], RankOptions().bootstrap_resamples: []}
    resampled: list[str] = []
    for _ in range(args.repeats):
        for resamples in times:
            began = time.perf_counter()
            result = rank(
                "builtin:digits", options=RankOptions(bootstrap_resamples=resamples), cache_dir=cache
            )
            times[resamples].append(time.perf_counter() - began)
            if resamples:
                resampled = result.ranking.get("uncertainty", {}).get("resampled_scores", [])
    off, on = (statistics.median(v) for v in times.values())
    payload = {
        "command": "python benchmarks/bootstrap_cost.py",
        "seconds": {str(k): v for k, v in times.items()},
        "median_without": off,
        "median_with": on,
        "added_fraction": on / off - 1.0,
        "resampled_scores": resampled,
        "cpu_count": os.cpu_count(),
    }
    out = Path("benchmarks/results")
    (out / "bootstrap_cost.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / "bootstrap_cost.md").write_text(
        "# What the ranking's resamples cost\n\n"
        f"`{payload['command']}`: the demo's job in-process (8 models, builtin:digits, default scores,"
        " features cached), median of "
        f"{args.repeats} runs: {off:.1f} s without resamples, {on:.1f} s with "
        f"{RankOptions().bootstrap_resamples} (+{100 * payload['added_fraction']:.0f} %). "
        f"Resampled: {', '.join(resampled) or 'none'}.\n"
    )
    print(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
