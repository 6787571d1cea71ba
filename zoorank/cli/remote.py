"""The commands that talk to a running server over HTTP: ``submit``, ``jobs``, ``leaderboard``
and ``confirm``."""

from __future__ import annotations

import sys
from typing import Any

import typer

from zoorank.cli.client import answer, server_client
from zoorank.cli.options import (
    BUDGET_HELP,
    BUDGET_UNIT_HELP,
    CONFIRM_LOSS_HELP,
    CONFIRM_SETTING_HELP,
    DATASET_HELP,
    INPUT_SIZE_HELP,
    MODELS_HELP,
    SAMPLES_HELP,
    SCORES_HELP,
    SEED_HELP,
    TOP_K_HELP,
    parse_params,
    rank_request_body,
)
from zoorank.cli.render import print_job, print_json, print_table
from zoorank.states import TERMINAL

jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a running server (--server URL).")


TERMINAL_STATUSES = tuple(TERMINAL)


SERVER_HELP = "Base URL of a running zoorank API (default: ZOORANK_SERVER, else http://127.0.0.1:8000)."


CSV_HELP = "Print the table as CSV (zoorank.export lists the columns)."


def submit(
    dataset: str = typer.Option(..., help=DATASET_HELP),
    server: str | None = typer.Option(None, help=SERVER_HELP),
    models: str | None = typer.Option(None, help=MODELS_HELP),
    scores: str | None = typer.Option(None, help=SCORES_HELP),
    samples_per_class: int | None = typer.Option(None, help=SAMPLES_HELP),
    input_size: int | None = typer.Option(None, help=INPUT_SIZE_HELP),
    seed: int | None = typer.Option(None, help=SEED_HELP),
    wait: bool = typer.Option(False, "--wait", help="Show progress until the job ends, then its ranking."),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Submit a ranking job to a running server (HTTP); with --wait, follow it to the end."""
    import time

    from tqdm import tqdm

    given = {"samples_per_class": samples_per_class, "input_size": input_size, "seed": seed}
    body = rank_request_body(dataset, models, scores, given)  # the server checks it as zoorank rank does
    with server_client(server) as client:
        job = answer(client.post("/v1/jobs", json=body), 202)
        if not wait:
            print_json(job) if as_json else typer.echo(
                f"job {job['id']} {job['status']}: {client.base}/jobs/{job['id']}"
            )
            return
        bar = tqdm(total=0, unit="img", disable=as_json or not sys.stderr.isatty(), file=sys.stderr)
        while job["status"] not in TERMINAL_STATUSES:
            time.sleep(1.0)
            job = answer(client.get(f"/v1/jobs/{job['id']}"))
            bar.total = sum(p["images_total"] for p in job["progress"])
            bar.n = sum(p["images_done"] for p in job["progress"])
            bar.set_description(
                f"{job['status']} {sum(p['status'] == 'succeeded' for p in job['progress'])}/"
                f"{len(job['progress'])} models"
            )
            bar.refresh()
        bar.close()
    if as_json:
        print_json(job)
    else:
        print_job(job)
    if job["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    server: str | None = typer.Option(None, help=SERVER_HELP),
    status: str | None = typer.Option(None, help="Only jobs with this status."),
    limit: int = typer.Option(20),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The latest jobs."""
    params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
    with server_client(server) as client:
        listing = answer(client.get("/v1/jobs", params=params))
    if as_json:
        print_json(listing)
        return
    rows = [
        {
            "id": j["id"],
            "status": j["status"],
            "dataset": j["dataset"],
            "models": len(j["models"]),
            "created": j["created_at"],
        }
        for j in listing["data"]
    ]
    print_table(["id", "status", "dataset", "models", "created"], rows, title=f"{listing['count']} jobs")


@jobs_app.command("show")
def jobs_show(
    job_id: str = typer.Argument(...),
    server: str | None = typer.Option(None, help=SERVER_HELP),
    as_json: bool = typer.Option(False, "--json"),
    as_csv: bool = typer.Option(False, "--csv", help=CSV_HELP),
) -> None:
    """One job: progress, or its ranking once it has one."""
    with server_client(server) as client:
        if as_csv:
            _print_csv(client.get(f"/v1/jobs/{job_id}", params={"format": "csv"}))
            return
        job = answer(client.get(f"/v1/jobs/{job_id}"))
    print_json(job) if as_json else print_job(job)


def _print_csv(response: Any) -> None:
    """A CSV answer of the server, as it came; an error answer as :func:`answer` prints it."""
    if response.status_code != 200:
        answer(response)
    typer.echo(response.text, nl=False)


def leaderboard_command(
    dataset: str = typer.Option(..., help="Dataset reference, e.g. builtin:digits."),
    score: str | None = typer.Option(None, help="Rank by this score (default: the default ranking)."),
    option_set: str | None = typer.Option(None, help="An option set's key (default: the most recent)."),
    server: str | None = typer.Option(None, help=SERVER_HELP),
    as_json: bool = typer.Option(False, "--json"),
    as_csv: bool = typer.Option(False, "--csv", help=CSV_HELP),
) -> None:
    """A server's leaderboard on one dataset: every model ranked, by the default ranking or one score."""
    params = {"dataset": dataset, "score": score, "option_set": option_set}
    params = {k: v for k, v in params.items() if v is not None}
    with server_client(server) as client:
        if as_csv:
            _print_csv(client.get("/v1/leaderboard", params={**params, "format": "csv"}))
            return
        board = answer(client.get("/v1/leaderboard", params=params))
    if as_json:
        print_json(board)
        return
    rows = [
        {
            **row,
            "90% rank": "{}-{}".format(*row["rank_interval"]) if row["rank_interval"] else None,
            "job": row["job_id"][:8],
        }
        for row in board["data"]
    ]
    ranked_by = score or (board.get("policy") or {}).get("name") or "the default ranking"
    print_table(
        ["rank", "model", "value", "p_top1", "90% rank", "ground_truth", "failed", "job"],
        rows,
        title=f"{dataset}: {board['count']} models ranked by {ranked_by}",
    )


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str = typer.Argument(...),
    server: str | None = typer.Option(None, help=SERVER_HELP),
) -> None:
    """Cancel a job that has not ended; it stays listed (``jobs delete`` removes it)."""
    with server_client(server) as client:
        job = answer(client.post(f"/v1/jobs/{job_id}/cancel"))
    typer.echo(f"job {job['id']} {job['status']}")


@jobs_app.command("delete")
def jobs_delete(
    job_id: str = typer.Argument(...),
    server: str | None = typer.Option(None, help=SERVER_HELP),
) -> None:
    """Delete a job with its results, confirmations and their files (a job that has not ended is
    cancelled first)."""
    with server_client(server) as client:
        response = client.delete(f"/v1/jobs/{job_id}")
        if response.status_code != 204:
            answer(response, 204)
    typer.echo(f"job {job_id} deleted")


def confirm_command(
    job_id: str = typer.Argument(..., help="A finished ranking job on the server."),
    server: str | None = typer.Option(None, help=SERVER_HELP),
    top_k: int | None = typer.Option(None, help=TOP_K_HELP),
    budget: float | None = typer.Option(None, help=BUDGET_HELP),
    budget_unit: str | None = typer.Option(None, help=BUDGET_UNIT_HELP),
    loss: str | None = typer.Option(None, help=CONFIRM_LOSS_HELP),
    setting: list[str] = typer.Option([], help=CONFIRM_SETTING_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan and its estimated cost; start nothing."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow it to the end, then print the answer."),
    show: bool = typer.Option(False, "--show", help="Print the job's latest confirmation; start nothing."),
    cancel: bool = typer.Option(False, "--cancel", help="Cancel the job's confirmation in progress."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Confirm a ranking job's shortlist on the server: fine-tune its top-k by successive
    halving and name one model, with its evidence."""
    import time

    from zoorank.confirm.report import confirm_options, print_answer

    body = confirm_options(
        top_k=top_k, budget=budget, budget_unit=budget_unit, loss=loss, settings=parse_params(setting)
    )
    with server_client(server) as client:
        if cancel:
            confirmation = answer(client.post(f"/v1/jobs/{job_id}/confirm/cancel"))
        elif show:
            confirmation = answer(client.get(f"/v1/jobs/{job_id}/confirm"))
        elif dry_run:
            plan = answer(client.post(f"/v1/jobs/{job_id}/confirm", json={**body, "dry_run": True}))
            print_json(plan) if as_json else typer.echo(f"dry run: {plan['summary']}")
            return
        else:
            confirmation = answer(client.post(f"/v1/jobs/{job_id}/confirm", json=body), 202)
        while wait and confirmation["status"] not in TERMINAL_STATUSES:
            if not as_json:
                progress = confirmation["progress"]
                eta = progress.get("eta_seconds")
                typer.secho(
                    f"{confirmation['status']}: {progress['text']}"
                    f" ({100 * progress['fraction']:.0f} %" + (f", about {eta:.0f} s left)" if eta else ")"),
                    err=True,
                )
            time.sleep(2.0)
            confirmation = answer(client.get(f"/v1/jobs/{job_id}/confirm"))
    if as_json:
        print_json(confirmation)
    elif confirmation.get("result"):
        print_answer(confirmation["result"], title=f"confirmation {confirmation['id']} of job {job_id}")
    else:
        typer.echo(
            f"confirmation {confirmation['id']} {confirmation['status']}: {confirmation['progress']['text']}"
            + (f" ({confirmation['error']})" if confirmation.get("error") else "")
            + f"; {client.base}/jobs/{job_id}"
        )
    if confirmation["status"] in ("failed", "cancelled") and not cancel:
        raise typer.Exit(1)
