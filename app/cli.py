"""The service's commands, added to ``zoorank`` through the ``zoorank.commands`` entry point
group (``zoorank.cli.load_commands``): ``serve``, ``worker``, ``run``, ``demo``, ``db upgrade``
and ``keys``. They live here so that the core library never imports the web app or the queue.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from pydantic import ValidationError
from zoorank_app.celery_client import QUEUES
from zoorank_app.keys import keys_app
from zoorank_app.settings import Settings, get_settings

from zoorank.cli.options import split_option
from zoorank.cli.render import print_ranking

db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic).")


def register(cli: typer.Typer) -> None:
    cli.command()(serve)
    cli.command()(worker)
    cli.command()(run)
    cli.command()(demo)
    cli.add_typer(db_app, name="db")
    cli.add_typer(keys_app, name="keys")


def _settings() -> Settings:
    """The service's settings, or a clear message (not a traceback) when one is refused."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = "ZOORANK_" + "_".join(str(p) for p in error["loc"][:1]).upper()
            typer.secho(f"error: {where}: {error['msg']}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    settings.apply_network_policy()
    return settings


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations to ZOORANK_DATABASE_URL."""
    from zoorank_app.db.session import current_revision, upgrade

    settings = _settings()
    settings.ensure_dirs()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {current_revision(settings.database_url)}")


def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    workers: int | None = typer.Option(
        None, min=1, help="API processes sharing the port (default ZOORANK_API_WORKERS); /metrics sums them."
    ),
) -> None:
    """The API alone (production: run `zoorank worker` beside it)."""
    from zoorank_app.logs import configure
    from zoorank_app.service_runner import serve as run_serve

    settings = _settings()
    configure(settings.log_format)
    run_serve(settings, host, port, workers or settings.api_workers)


def worker(
    concurrency: int | None = typer.Option(
        None, help="Worker processes (default ZOORANK_WORKER_CONCURRENCY); each gets cores / N torch threads."
    ),
    queues: str | None = typer.Option(
        None,
        help="gpu (forward passes), cpu (scores on cached arrays), or both (default: ZOORANK_WORKER_QUEUES).",
    ),
) -> None:
    """A Celery worker alone."""
    from zoorank_app.db.session import upgrade

    settings = _settings()
    settings.ensure_dirs()
    if settings.auto_migrate:
        upgrade(settings.database_url)
    processes = concurrency or settings.worker_concurrency
    # One number for both: Celery's pool size and the torch threads each pool process takes
    # (workers.celery_app divides the cores by the setting).
    os.environ["ZOORANK_WORKER_CONCURRENCY"] = str(processes)
    if queues is not None:
        os.environ["ZOORANK_WORKER_QUEUES"] = queues
        get_settings.cache_clear()
        settings = _settings()  # checks the names
    os.execvp(sys.executable, worker_argv(processes, settings.worker_queues))


def worker_argv(concurrency: int, queues: Sequence[str] = QUEUES) -> list[str]:
    """The Celery worker's command line (``zoorank worker``, the embedded runner, the tests)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "zoorank_workers.celery_app:celery_app",
        "--quiet",
        "worker",
        "--loglevel=WARNING",
        f"--concurrency={concurrency}",
        "-Q",
        ",".join(queues),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def run(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000)) -> None:
    """API + one worker on the embedded defaults (SQLite, filesystem broker), foreground."""
    from zoorank_app.service_runner import run_embedded

    _settings()
    run_embedded(host, port, worker_argv(1))


def demo(
    port: int = typer.Option(8765),
    samples_per_class: int = typer.Option(50),
    input_size: int = typer.Option(64),
    scores: str | None = typer.Option(
        None, help="Comma-separated scores (default: the default ranking's own scores)."
    ),
) -> None:
    """Start API + worker, submit a ranking of the offline zoo on builtin:digits, print it, stop."""
    from zoorank_app.service_runner import demo as run_demo

    # The demo ranks the offline zoo only: it never needs the network.
    os.environ.setdefault("ZOORANK_OFFLINE", "1")
    get_settings.cache_clear()
    _settings()
    raise typer.Exit(
        run_demo(
            port=port,
            samples_per_class=samples_per_class,
            input_size=input_size,
            scores=split_option(scores),
            worker_argv=worker_argv(1),
            printer=print_ranking,
        )
    )
