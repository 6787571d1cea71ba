"""``zoorank ...``: the command line (docs/design.md §3).

The core commands run the library in this process (:mod:`zoorank.cli.local`,
:mod:`zoorank.cli.catalogues`); the client commands talk to a server over HTTP
(:mod:`zoorank.cli.remote`, through :mod:`zoorank.cli.client`); :mod:`zoorank.cli.render` prints.
The service commands (``run``, ``serve``, ``worker``, ``db``, ``demo``, ``keys``) live in
``app.cli`` and ``bench`` in ``benchmarks``; :func:`load_commands` adds them through the
``zoorank.commands`` entry points, so the core never imports the web app.
"""

from __future__ import annotations

import typer

from zoorank.cli import local, remote
from zoorank.cli.catalogues import cache_app, datasets_app, scores_app, zoo_app
from zoorank.cli.options import fail, refused
from zoorank.settings import CoreSettings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Rank a zoo of pretrained models for transfer to your labelled images.",
)
# in the order `zoorank --help` lists them
app.command()(local.rank)
app.command()(local.score)
app.command()(local.explain)
app.command()(remote.submit)
app.command("leaderboard")(remote.leaderboard_command)
app.command("confirm")(remote.confirm_command)
app.command("validate")(local.validate_command)
app.add_typer(zoo_app, name="zoo")
app.add_typer(scores_app, name="scores")
app.add_typer(datasets_app, name="datasets")
app.add_typer(cache_app, name="cache")
app.add_typer(remote.jobs_app, name="jobs")


COMMANDS_GROUP = "zoorank.commands"


_loaded: list[str] = []


def load_commands() -> typer.Typer:
    """The whole ``zoorank`` command: these core commands and those other packages register
    through the ``zoorank.commands`` entry point group (the service's ``serve``, ``worker``,
    ``run``, ``demo``, ``db``, ``keys`` from ``app.cli``; ``bench`` from the source tree's
    ``benchmarks``). The core never imports them; a package that is not installed simply adds
    nothing."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=COMMANDS_GROUP):
        if entry.name in _loaded:
            continue
        try:
            register = entry.load()
        except ModuleNotFoundError as exc:
            # only the entry's own package may be absent (`bench` outside the repository root,
            # where benchmarks/ is not installed); any other broken import fails loudly
            if exc.name != entry.module.split(".")[0]:
                raise
            continue
        register(app)
        _loaded.append(entry.name)
    return app


@app.callback()
def _entry(ctx: typer.Context) -> None:
    # The network policy is set here, at the entry point, before any command imports timm.
    from pydantic import ValidationError

    try:
        settings = CoreSettings()
    except ValidationError as exc:
        fail(refused(exc))
        return
    settings.apply_network_policy()


def main() -> None:
    load_commands()()
