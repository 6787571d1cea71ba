"""Printing answers: JSON, tables, a ranking and a server's job."""

from __future__ import annotations

import json
from typing import Any

import typer


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=float))


def print_table(columns: list[str], rows: list[dict[str, Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    cells = [
        [
            "" if row.get(c) is None else (f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]))
            for c in columns
        ]
        for row in rows
    ]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for line in cells:
        table.add_row(*line)
    # Wide enough for every cell even when stdout is not a terminal (rich assumes 80 columns).
    needed = sum(max([len(c), *(len(line[i]) for line in cells)]) + 3 for i, c in enumerate(columns)) + 1
    console = Console()
    Console(width=max(console.width, needed)).print(table)


MAX_TABLE_SCORES = 6


HEADLINE_SCORES = ["linear_probe", "ncti", "leep", "betti_slope", "hidden_margin", "logme", "nce"]


def print_ranking(
    ranking: dict[str, Any],
    values: dict[str, dict[str, float | None]],
    failed: list[str],
    title: str,
) -> None:
    scores = sorted({s for v in values.values() for s in v})
    if len(scores) > MAX_TABLE_SCORES:
        policy = ranking.get("policy") or {}
        names = policy.get("scores", [])
        weights = policy.get("weights") or [1.0] * len(names)
        by_weight = [s for _, s in sorted(zip((-abs(w) for w in weights), names, strict=True))]
        preferred = [*by_weight, *HEADLINE_SCORES]
        shown = [s for s in dict.fromkeys(preferred) if s in scores][:MAX_TABLE_SCORES]
        typer.echo(f"{len(scores)} scores computed; the table shows {', '.join(shown)} (--json has all)")
        scores = shown
    left_out = ranking.get("left_out") or {}
    headers = {s: f"{s} (left out)" if s in left_out else s for s in scores}
    rows = []
    for row in ranking["aggregate"]:
        interval = row.get("rank_interval")
        rows.append(
            {
                "rank": row["rank"],
                "model": row["model"] + (f" (failed: {row['failed']})" if row.get("failed") else ""),
                "value": row["value"],
                "P(top-1)": row.get("p_top1"),
                "90% rank": f"{interval[0]}-{interval[1]}" if interval else None,
                **{headers[s]: values.get(row["model"], {}).get(s) for s in scores},
            }
        )
    print_table(["rank", "model", "value", "P(top-1)", "90% rank", *headers.values()], rows, title=title)
    policy = ranking.get("policy") or {}
    typer.echo(f"ranked by {policy.get('name')}: {ranking.get('rule') or policy.get('rule')}")
    for why in left_out.values():
        typer.secho(why, fg=typer.colors.YELLOW)
    if ranking.get("tie"):
        typer.secho(
            "the ranking is a tie: no score it could use tells these models apart", fg=typer.colors.YELLOW
        )
    uncertainty = ranking.get("uncertainty")
    if uncertainty:
        typer.echo(uncertainty["top_two"]["text"])
        typer.echo(f"P(top-1) and 90% rank intervals from {uncertainty['method']}")
    if failed:
        typer.secho(f"failed: {', '.join(failed)}", fg=typer.colors.YELLOW)


def print_job(job: dict[str, Any]) -> None:
    if job.get("kind") == "validation" and job.get("ranking"):
        truth = job["ranking"]
        print_table(
            ["model", "test accuracy", "std", "error"],
            [
                {
                    "model": g["model"],
                    "test accuracy": g["accuracy"],
                    "std": g["accuracy_std"],
                    "error": g["error"],
                }
                for g in truth["ground_truth"]
            ],
            title=f"validation {job['id']} on {job['dataset']} ({truth['mode']}): {job['status']}",
        )
        if truth.get("agreement"):
            print_table(
                ["score", "weighted tau", "kendall tau", "top-1 regret", "models"],
                [
                    {
                        "score": a["score"],
                        "weighted tau": a["weighted_tau"],
                        "kendall tau": a["kendall_tau"],
                        "top-1 regret": a["top1_regret"],
                        "models": a["n_models"],
                    }
                    for a in truth["agreement"]
                ],
                title="agreement with the ground truth",
            )
        for warning in truth.get("warnings", []):
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)
    elif job.get("ranking"):
        values: dict[str, dict[str, float | None]] = {}
        for r in job["results"]:
            values.setdefault(r["model"], {})[r["score"]] = r["value"]
        failed = [p["model"] for p in job["progress"] if p["status"] != "succeeded"]
        print_ranking(
            job["ranking"], values, failed, title=f"job {job['id']} on {job['dataset']}: {job['status']}"
        )
    else:
        print_table(
            ["model", "status", "images", "error"],
            [
                {
                    "model": p["model"],
                    "status": p["status"],
                    "images": f"{p['images_done']}/{p['images_total']}",
                    "error": p["error"],
                }
                for p in job["progress"]
            ],
            title=f"job {job['id']} on {job['dataset']}: {job['status']}",
        )
    if job.get("error"):
        typer.secho(f"problems: {job['error']}", fg=typer.colors.YELLOW)
