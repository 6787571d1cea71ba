"""Twin check of the Betti slopes at job defaults, over targets and sampling seeds.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/betti/twins.py``
Writes ``benchmarks/results/betti_twins.{json,md}``.

Known answer, no ground truth needed: an ImageNet-pretrained model transfers better than the
same architecture at random init. For the 4 offline models and their twins, each target and
each sampling seed (which images are drawn), with every other option at the job's default
(64 px, 5 tap images per class): how many pretrained models does each score put above their
twin, and by what smallest margin (twin's value minus the pretrained one; > 0 is right)?
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zoorank.rank import RankOptions, rank
from zoorank.settings import enter_offline_by_default

RESULTS = Path(__file__).resolve().parents[1] / "results"
PRETRAINED = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv2_100"]
SCORES = ["betti_slope", "betti_slope_norm", "betti_decay_norm"]
TARGETS = ["builtin:digits", "builtin:fashion-mnist"]
SEEDS = [0, 1, 2]


def run(cache_dir: str) -> list[dict[str, object]]:
    rows = []
    models = [*PRETRAINED, *[f"{m}@random" for m in PRETRAINED]]
    for target in TARGETS:
        for seed in SEEDS:
            options = RankOptions(samples_per_class=5, tap_images_per_class=5, seed=seed)
            result = rank(target, models, SCORES, options, cache_dir=cache_dir)
            values = {r.model: {k: s.value for k, s in r.scores.items()} for r in result.results}
            for score in SCORES:
                margins = [values[f"{m}@random"][score] - values[m][score] for m in PRETRAINED]
                rows.append(
                    {
                        "target": target,
                        "seed": seed,
                        "score": score,
                        "above": sum(margin > 0 for margin in margins),
                        "pairs": len(PRETRAINED),
                        "min_margin": min(margins),
                    }
                )
                print(rows[-1], flush=True)
    return rows


def to_markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "# Betti slopes at job defaults: pretrained above its random twin",
        "",
        "4 offline ImageNet models vs their random-init twins; 64 px, 5 tap images per class, "
        "sampling seed 0-2. Margin: twin minus pretrained (lower is better, so > 0 is right). "
        "`python benchmarks/betti/twins.py`.",
        "",
        "| score | target | seed | above twin | smallest margin |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (SCORES.index(str(r["score"])), str(r["target"]), r["seed"])):
        lines.append(
            f"| {r['score']} | {r['target']} | {r['seed']} "
            f"| {r['above']}/{r['pairs']} | {r['min_margin']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    enter_offline_by_default()
    cache = os.environ.get("ZOORANK_BENCH_CACHE", "benchmarks/cache/twins")
    rows = run(cache)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "betti_twins.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "betti_twins.md").write_text(to_markdown(rows))
    print(to_markdown(rows))


if __name__ == "__main__":
    main()
