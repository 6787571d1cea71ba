"""Write the chosen default into ``zoorank/policy.py`` (``python -m benchmarks.heldout policy``).

The default ranking is code, reviewed like code: this rewrites the ``DEFAULT_RANKING = ...``
literal from ``benchmarks/results/heldout.json`` (weights, temperature, held-out figures) with
the commit that holds those results as its provenance.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

POLICY_FILE = Path("zoorank/policy.py")
RESULTS = Path("benchmarks/results/heldout.json")


def _results_commit() -> str:
    """The last commit that changed the results file (the figures' provenance)."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%H", "--", str(RESULTS)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def literal(payload: dict[str, Any], *, name: str, version: str, commit: str) -> str:
    chosen = payload["chosen"]["policy"]
    head = payload["headline"]
    singles = {
        key[len("single:") :]: round(value["mean"], 3)
        for key, value in payload["procedures"].items()
        if key.startswith("single:")
    }
    lines = [
        "DEFAULT_RANKING = RankingPolicy(",
        f'    name="{name}",',
        f'    method="{chosen["method"]}",',
        "    scores=(",
        *[f'        "{s}",' for s in chosen["scores"]],
        "    ),",
    ]
    if chosen.get("weights"):
        lines += ["    weights=(", *[f"        {w:.6f}," for w in chosen["weights"]], "    ),"]
    lines += [
        f'    version="{version}",',
        f"    temperature={chosen['temperature']:.6f},",
        "    provenance={",
        '        "benchmark": "benchmarks/results/heldout.md",',
        f'        "benchmark_commit": "{commit}",',
        f'        "procedure": "{payload["chosen"]["procedure"]}",',
        f'        "targets": {len(payload["targets"])},',
        f'        "models": {len(payload["models"])},',
        f'        "heldout_weighted_tau": {head["nested_selection"]["mean"]:.3f},',
        '        "heldout_ci95": ({:.3f}, {:.3f}),'.format(*head["nested_selection"]["ci95"]),
        f'        "procedure_loto_weighted_tau": {head["chosen_procedure_loto"]["mean"]:.3f},',
        '        "procedure_loto_ci95": ({:.3f}, {:.3f}),'.format(*head["chosen_procedure_loto"]["ci95"]),
        f'        "previous_aggregate_loto_weighted_tau": {head["previous_aggregate"]["mean"]:.3f},',
        f'        "imagenet_prior_loto_weighted_tau": {head["imagenet_prior"]["mean"]:.3f},',
        '        "single_scores_heldout": {',
        *[f'            "{s}": {v},' for s, v in sorted(singles.items())],
        "        },",
        "    },",
        ")",
    ]
    return "\n".join(lines) + "\n"


def write(name: str, version: str) -> str:
    payload = json.loads(RESULTS.read_text())
    text = literal(payload, name=name, version=version, commit=_results_commit())
    source = POLICY_FILE.read_text()
    pattern = re.compile(r"DEFAULT_RANKING = RankingPolicy\(\n.*?\n\)\n", re.DOTALL)
    if not pattern.search(source):
        raise SystemExit(f"no DEFAULT_RANKING literal found in {POLICY_FILE}")
    POLICY_FILE.write_text(pattern.sub(lambda _: text, source, count=1))
    return text
