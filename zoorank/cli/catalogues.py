"""``zoorank zoo|scores|datasets list`` and ``zoorank cache``: what this installation knows and
holds, read in-process."""

from __future__ import annotations

from pathlib import Path

import typer

from zoorank.cli.options import CACHE_DIR_HELP, feature_cache
from zoorank.cli.render import print_json, print_table

zoo_app = typer.Typer(no_args_is_help=True, help="The model zoo.")
scores_app = typer.Typer(no_args_is_help=True, help="The score catalogue.")
datasets_app = typer.Typer(no_args_is_help=True, help="Known datasets.")
cache_app = typer.Typer(
    no_args_is_help=True, help="The feature cache (ZOORANK_CACHE_DIR, ZOORANK_CACHE_MAX_MB)."
)


@zoo_app.command("list")
def zoo_list(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The built-in zoo (offline ImageNet weights and random-init twins): the models this
    command line knows. Models registered with POST /v1/models are the service's (its database):
    see GET /v1/models, and rank them with `zoorank submit`."""
    from zoorank.zoo import get_model_spec, list_models

    rows = [get_model_spec(n).to_dict() for n in list_models()]
    if as_json:
        print_json(rows)
        return
    print_table(["name", "architecture", "weights", "imagenet_top1"], rows)


@scores_app.command("list")
def scores_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered score: family, direction, cost, needs, paper, held-out quality."""
    from zoorank.policy import describe, score_catalogue

    rows = score_catalogue()
    if as_json:
        print_json(rows)
        return
    shown = [
        {
            **row,
            "needs": ",".join(row["needs"]),
            "default": "yes" if row["in_default_ranking"] else "",
            "held-out wτ": row["heldout_weighted_tau"],
        }
        for row in rows
    ]
    print_table(["name", "family", "direction", "cost", "needs", "default", "held-out wτ", "paper"], shown)
    typer.echo(describe())


@datasets_app.command("list")
def datasets_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Builtin datasets (folder:, npz: and upload: references are the user's own)."""
    from zoorank.data import list_builtin_datasets

    rows = list_builtin_datasets()
    if as_json:
        print_json(rows)
        return
    print_table(["ref", "classes", "available", "description"], rows)


@cache_app.command("stats")
def cache_stats(
    cache_dir: Path | None = typer.Option(None, help=CACHE_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Entries, size, bound and the oldest and newest use of the feature cache."""
    stats = feature_cache(cache_dir).stats()
    if as_json:
        print_json(stats)
        return
    limit = f"{stats['limit_mb']:g} MB" if stats["limit_bytes"] else "none"
    typer.echo(f"cache       {stats['root']}")
    typer.echo(f"entries     {stats['entries']} ({stats['mb']:.1f} MB; bound {limit})")
    typer.echo(f"bytes       {stats['bytes']} of {stats['limit_bytes'] or 'no bound'}")
    typer.echo(f"oldest use  {stats['oldest_use'] or '-'}")
    typer.echo(f"newest use  {stats['newest_use'] or '-'}")
    if stats["temp_files"]:
        temp_mb = stats["temp_bytes"] / 2**20
        typer.echo(f"temp files  {stats['temp_files']} ({temp_mb:.1f} MB: writes under way or killed)")


@cache_app.command("prune")
def cache_prune(
    max_mb: int | None = typer.Option(
        None, min=0, help="Keep at most this many MB (default: ZOORANK_CACHE_MAX_MB)."
    ),
    older_than_days: float | None = typer.Option(
        None, min=0, help="Remove entries unused for this many days."
    ),
    everything: bool = typer.Option(False, "--all", help="Remove every entry."),
    cache_dir: Path | None = typer.Option(None, help=CACHE_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Remove least recently used entries down to a size, entries unused for some days, or all;
    prints what it freed. With no option: down to the bound, ZOORANK_CACHE_MAX_MB."""
    cache = feature_cache(cache_dir)
    max_bytes = None if max_mb is None else max_mb * 2**20
    if max_bytes is None and older_than_days is None and not everything and cache.max_bytes:
        max_bytes = cache.max_bytes
    report = cache.prune(
        max_bytes=max_bytes,
        older_than_seconds=None if older_than_days is None else older_than_days * 86400,
        everything=everything,
    )
    if as_json:
        print_json(report.to_dict())
        return
    typer.echo(
        f"freed {report.freed_bytes / 2**20:.1f} MB: {report.removed_entries} entries removed"
        f"{f', {report.removed_temp_files} stale temp files' if report.removed_temp_files else ''}; "
        f"{report.remaining_entries} left ({report.remaining_bytes / 2**20:.1f} MB)"
    )
