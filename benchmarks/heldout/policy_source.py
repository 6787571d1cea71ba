"""Release the chosen default as data (``python -m benchmarks.heldout policy --name N --version V``).

Writes ``zoorank/policies/N.json`` from ``benchmarks/results/heldout.json``: the chosen
policy (scores, non-negative weights, temperature), its held-out figures and the commit that
holds those results. A released file is never edited: writing a name that exists is refused,
so a new default needs a new name and version (then point ``zoorank.policy.DEFAULT_POLICY`` at
it). ``tests/unit/test_policy.py`` checks that the default in force is the benchmark's choice.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

POLICIES = Path("zoorank/policies")
RESULTS = Path("benchmarks/results/heldout.json")


def _results_commit() -> str:
    """The last commit that changed the results file (the figures' provenance)."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%H", "--", str(RESULTS)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _figure(row: dict[str, Any]) -> dict[str, Any]:
    return {"mean": round(row["mean"], 3), "ci95": [round(v, 3) for v in row["ci95"]]}


def policy_file(payload: dict[str, Any], *, name: str, version: str, commit: str) -> dict[str, Any]:
    """The released policy: what :func:`zoorank.policy.RankingPolicy.from_dict` reads, and its
    provenance (every figure held out unless marked)."""
    chosen = payload["chosen"]["policy"]
    head = payload["headline"]
    nested = head["nested_selection"]
    singles = {
        key[len("single:") :]: round(value["target_x_population"]["mean"], 3)
        for key, value in payload["procedures"].items()
        if key.startswith("single:")
    }
    populations = payload.get("populations", {})
    return {
        "name": name,
        "version": version,
        "method": chosen["method"],
        "scores": chosen["scores"],
        "weights": chosen["weights"],
        "temperature": round(chosen["temperature"], 6),
        "rule": "",
        "provenance": {
            "benchmark": "benchmarks/results/heldout.md",
            "benchmark_commit": commit,
            "procedure": payload["chosen"]["procedure"],
            "selection_rule": payload.get("selection_rule", ""),
            "targets": len(payload["targets"]),
            "models": len(payload["models"]),
            "populations": {pop: len(models) for pop, models in populations.items()},
            "heldout_over": f"{len(payload['targets'])} targets x {len(populations)} model populations",
            # what the whole selection gets on a target and a population it never saw
            "heldout_weighted_tau": round(nested["target_x_population"]["mean"], 3),
            "heldout_ci95": [round(v, 3) for v in nested["target_x_population"]["ci95"]],
            "heldout_loto": _figure(nested["loto"]),
            "procedure_target_x_population": _figure(head["chosen_procedure"]["target_x_population"]),
            "procedure_loto": _figure(head["chosen_procedure"]["loto"]),
            "heldout_ridge_v3_procedure": {
                "target_x_population": _figure(head["heldout_ridge_v3_procedure"]["target_x_population"]),
                "loto": _figure(head["heldout_ridge_v3_procedure"]["loto"]),
            },
            "previous_aggregate": {
                "target_x_population": _figure(head["previous_aggregate"]["target_x_population"]),
                "loto": _figure(head["previous_aggregate"]["loto"]),
            },
            "single_scores_heldout": singles,
        },
    }


def write(name: str, version: str) -> str:
    path = POLICIES / f"{name}.json"
    if path.exists():
        raise SystemExit(f"{path} is released and never edited: release a new name and version instead")
    payload = json.loads(RESULTS.read_text())
    released = policy_file(payload, name=name, version=version, commit=_results_commit())
    text = json.dumps(released, indent=1) + "\n"
    path.write_text(text)
    return text
