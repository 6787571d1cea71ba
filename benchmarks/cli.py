"""``zoorank bench ...``: registered through the ``zoorank.commands`` entry point group when
the source tree's ``benchmarks`` package is importable (run from the repository root)."""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (run from the repository root).")
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(cli: typer.Typer) -> None:
    cli.add_typer(bench_app, name="bench")


def _bench(module: str, args: list[str]) -> None:
    raise typer.Exit(importlib.import_module(f"zoorank_bench.{module}").main(args))


@bench_app.command("ranking", context_settings=PASS_THROUGH)
def bench_ranking(ctx: typer.Context) -> None:
    """Ranking quality + PowerGrad study = `python -m benchmarks.ranking` (see its --help)."""
    _bench("ranking.__main__", list(ctx.args))


@bench_app.command("heldout", context_settings=PASS_THROUGH)
def bench_heldout(ctx: typer.Context) -> None:
    """The held-out benchmark that chose the default ranking = `python -m benchmarks.heldout`
    (`run [--workers N]`, then `analyse`)."""
    _bench("heldout.__main__", list(ctx.args))


@bench_app.command("load", context_settings=PASS_THROUGH)
def bench_load(ctx: typer.Context) -> None:
    """The job API under 50 clients on PostgreSQL + Redis = `python -m benchmarks.load`
    (see its --help)."""
    _bench("load", list(ctx.args))


@bench_app.command("job-cost", context_settings=PASS_THROUGH)
def bench_job_cost(ctx: typer.Context) -> None:
    """The demo's job: score time against forward-pass time = `python -m benchmarks.job_cost`."""
    _bench("job_cost", list(ctx.args))


@bench_app.command("confirm", context_settings=PASS_THROUGH)
def bench_confirm(ctx: typer.Context) -> None:
    """Regret against compute of ranking + confirmation (successive halving) on the held-out
    benchmark's cached learning curves = `python -m benchmarks.confirm`."""
    _bench("confirm", list(ctx.args))
