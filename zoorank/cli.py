"""``zoorank ...``: the command line (docs/design.md §3).

The core commands here (``rank``, ``score``, ``explain``, ``validate``, catalogues, the cache) use
only the library; the client commands (``submit``, ``jobs``, ``confirm``) talk to a server over
HTTP. The service commands (``run``, ``serve``, ``worker``, ``db``, ``demo``, ``keys``) live in
``app.cli`` and ``bench`` in ``benchmarks``; :func:`load_commands` adds them through the
``zoorank.commands`` entry points, so the core never imports the web app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zoorank.confirm.request import DEFAULT_TOP_K
from zoorank.settings import ClientSettings, CoreSettings
from zoorank.states import TERMINAL
from zoorank.validation_request import DEFAULT_ALPHA, DEFAULT_LOSS, DEFAULT_MODE, DEFAULT_SEEDS

if TYPE_CHECKING:
    from zoorank.features.cache import FeatureCache

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Rank a zoo of pretrained models for transfer to your labelled images.",
)
zoo_app = typer.Typer(no_args_is_help=True, help="The model zoo.")
scores_app = typer.Typer(no_args_is_help=True, help="The score catalogue.")
datasets_app = typer.Typer(no_args_is_help=True, help="Known datasets.")
app.add_typer(zoo_app, name="zoo")
app.add_typer(scores_app, name="scores")
app.add_typer(datasets_app, name="datasets")
cache_app = typer.Typer(
    no_args_is_help=True, help="The feature cache (ZOORANK_CACHE_DIR, ZOORANK_CACHE_MAX_MB)."
)
app.add_typer(cache_app, name="cache")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _refused(exc: Any) -> str:
    """A pydantic ``ValidationError`` of the settings as one line: each message names its variable."""
    return "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())


def split_option(value: str | None) -> list[str] | None:
    """A comma-separated option: None when not given; an empty string gives [] (which the
    library refuses with a clear message, as the API does)."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--param takes k=v, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=float))


DATA_ROOT_HELP = "Also read folder:/npz: datasets and weight files under this folder (repeatable)."


def _feature_cache(given: Path | None) -> FeatureCache:
    """ZOORANK_CACHE_DIR (or ``--cache-dir``), bounded by ZOORANK_CACHE_MAX_MB."""
    from zoorank.features.cache import FeatureCache

    return FeatureCache.from_settings(CoreSettings(), root=given)


def _paths(extra: list[Path]) -> dict[str, Any]:
    """Where a command may read from, by the server's rules and settings: ZOORANK_DATA_ROOTS
    (default VAR_DIR/data) plus any ``--data-root`` for datasets and weight files, and the
    server's upload folder for ``upload:ID``."""
    settings = CoreSettings()
    roots = [*settings.data_roots, *(p.expanduser().resolve() for p in extra)]
    return {"data_roots": roots, "upload_dir": settings.upload_dir}


# -- catalogues ---------------------------------------------------------------------------


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
        _print_json(rows)
        return
    _table(["name", "architecture", "weights", "imagenet_top1"], rows)


@scores_app.command("list")
def scores_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered score: family, direction, cost, needs, paper, held-out quality."""
    from zoorank.policy import describe, score_catalogue

    rows = score_catalogue()
    if as_json:
        _print_json(rows)
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
    _table(["name", "family", "direction", "cost", "needs", "default", "held-out wτ", "paper"], shown)
    typer.echo(describe())


@datasets_app.command("list")
def datasets_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Builtin datasets (folder:, npz: and upload: references are the user's own)."""
    from zoorank.data import list_builtin_datasets

    rows = list_builtin_datasets()
    if as_json:
        _print_json(rows)
        return
    _table(["ref", "classes", "available", "description"], rows)


CACHE_DIR_HELP = "Feature cache folder [default: ZOORANK_CACHE_DIR]."


@cache_app.command("stats")
def cache_stats(
    cache_dir: Path | None = typer.Option(None, help=CACHE_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Entries, size, bound and the oldest and newest use of the feature cache."""
    stats = _feature_cache(cache_dir).stats()
    if as_json:
        _print_json(stats)
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
        None, min=0, help="Keep at most this many MB [default: ZOORANK_CACHE_MAX_MB]."
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
    cache = _feature_cache(cache_dir)
    max_bytes = None if max_mb is None else max_mb * 2**20
    if max_bytes is None and older_than_days is None and not everything and cache.max_bytes:
        max_bytes = cache.max_bytes
    report = cache.prune(
        max_bytes=max_bytes,
        older_than_seconds=None if older_than_days is None else older_than_days * 86400,
        everything=everything,
    )
    if as_json:
        _print_json(report.to_dict())
        return
    typer.echo(
        f"freed {report.freed_bytes / 2**20:.1f} MB: {report.removed_entries} entries removed"
        f"{f', {report.removed_temp_files} stale temp files' if report.removed_temp_files else ''}; "
        f"{report.remaining_entries} left ({report.remaining_bytes / 2**20:.1f} MB)"
    )


def _table(columns: list[str], rows: list[dict[str, Any]], title: str | None = None) -> None:
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


TOP_K_HELP = (
    "Confirmation: how many of the best-ranked models to fine-tune"
    f" [default: {DEFAULT_TOP_K}, chosen by benchmarks/confirm.py]."
)
BUDGET_HELP = "Confirmation: a cap in --budget-unit [default: none, the schedule's own cost]."
BUDGET_UNIT_HELP = "Confirmation: images (image passes) or seconds (estimated) [default: images]."
CONFIRM_LOSS_HELP = "Confirmation: the fine-tuning loss, ce or powergrad [default: ce]."
CONFIRM_SETTING_HELP = "Confirmation: a trainer setting k=v, e.g. epochs=8, val_per_class=20 (repeatable)."


# -- ranking in-process -------------------------------------------------------------------


@app.command()
def rank(
    dataset: str = typer.Option(..., help="Dataset reference, e.g. builtin:digits."),
    models: str | None = typer.Option(None, help="Comma-separated models (default: the built-in zoo)."),
    scores: str | None = typer.Option(
        None, help="Comma-separated scores (default: the default ranking's own scores)."
    ),
    samples_per_class: int = typer.Option(50, help="Stratified sample per class (0 = all)."),
    input_size: int = typer.Option(64, help="Input resolution in pixels (0 = the model's own)."),
    seed: int = typer.Option(0),
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder [default: ZOORANK_CACHE_DIR]."),
    data_root: list[Path] = typer.Option([], help=DATA_ROOT_HELP),
    param: list[str] = typer.Option([], help="Score parameter SCORE.k=v (repeatable)."),
    bootstrap_resamples: int | None = typer.Option(
        None, help="Resamples behind P(top-1) and rank intervals (0 = none; default: the job default)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole ranking as JSON."),
    as_csv: bool = typer.Option(
        False, "--csv", help="Print the ranking and scores as CSV (zoorank.export lists the columns)."
    ),
    confirm: bool = typer.Option(
        False, "--confirm", help="Then confirm the shortlist by successive halving over fine-tuning epochs."
    ),
    top_k: int | None = typer.Option(None, help=TOP_K_HELP),
    budget: float | None = typer.Option(None, help=BUDGET_HELP),
    budget_unit: str | None = typer.Option(None, help=BUDGET_UNIT_HELP),
    loss: str | None = typer.Option(None, help=CONFIRM_LOSS_HELP),
    confirm_setting: list[str] = typer.Option([], help=CONFIRM_SETTING_HELP),
) -> None:
    """Whole ranking in this process, no server: prints a table (or JSON); with --confirm,
    then fine-tunes the shortlist and names one model."""
    from tqdm import tqdm

    from zoorank.errors import ZoorankError
    from zoorank.rank import RankOptions
    from zoorank.rank import rank as run_rank

    score_params: dict[str, dict[str, str]] = {}
    for key, value in _params(param).items():
        if "." not in key:
            _fail(f"--param takes SCORE.k=v, got {key!r}")
        score, name = key.split(".", 1)
        score_params.setdefault(score, {})[name] = value
    options = RankOptions(
        samples_per_class=samples_per_class,
        input_size=input_size or None,
        seed=seed,
        score_params=score_params,
    )
    if bootstrap_resamples is not None:
        options.bootstrap_resamples = bootstrap_resamples
    if as_csv and (as_json or confirm):
        _fail("--csv prints the ranking alone: leave out --json and --confirm")
    confirm_request = None
    if confirm:
        confirm_request = _confirm_request(top_k, budget, budget_unit, loss, confirm_setting)
    elif any(v is not None for v in (top_k, budget, budget_unit, loss)) or confirm_setting:
        _fail("--top-k, --budget, --budget-unit, --loss and --confirm-setting need --confirm")
    bar = tqdm(total=0, unit="img", disable=as_json or not sys.stderr.isatty(), file=sys.stderr)

    def on_model(name: str, index: int, total: int) -> None:
        bar.set_description(f"[{index + 1}/{total}] {name}")

    def progress(images: int) -> None:
        bar.total = (bar.total or 0) + (0 if bar.n + images <= (bar.total or 0) else images)
        bar.update(images)

    try:
        result = run_rank(
            dataset,
            split_option(models),
            split_option(scores),
            options,
            cache=_feature_cache(cache_dir),
            **_paths(data_root),
            on_model=on_model,
            progress=progress,
        )
    except ZoorankError as exc:
        bar.close()
        _fail(str(exc))
        return
    bar.close()
    failed = [r for r in result.results if r.error]
    answer = None
    if confirm_request is not None and len(failed) < len(result.results):
        answer = _confirm_locally(dataset, result, confirm_request, _paths(data_root), quiet=as_json)
    if as_csv:
        from zoorank.export import rank_result_table, to_csv

        typer.echo(to_csv(rank_result_table(result.to_dict())), nl=False)
        if failed and len(failed) == len(result.results):
            raise typer.Exit(1)
        return
    if as_json:
        _print_json({**result.to_dict(), **({"confirmation": answer} if answer is not None else {})})
        if failed and len(failed) == len(result.results):
            raise typer.Exit(1)
        return
    if failed and len(failed) == len(result.results):
        for r in failed:
            typer.secho(f"{r.model} failed: {r.error}", fg=typer.colors.RED, err=True)
        _fail(f"every model failed ({len(failed)} of {len(failed)}); nothing was ranked", code=1)
    print_ranking(
        result.to_dict()["ranking"],
        {r.model: {s: v.value for s, v in r.scores.items()} for r in result.results},
        [r.model for r in result.results if r.error],
        title=f"{dataset}: {len(result.sample_ids)} images, "
        f"{options.input_size or 'native'} px, {result.seconds:.1f} s",
    )
    for r in failed:
        typer.secho(f"{r.model} failed: {r.error}", fg=typer.colors.YELLOW, err=True)
    if failed:
        typer.secho(
            f"partial ranking: {len(failed)} of {len(result.results)} models failed (listed above)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if answer is not None:
        from zoorank.confirm.report import print_answer

        print_answer(answer, title=f"confirmation of the top {len(answer['models'])}")


def _confirm_request(
    top_k: int | None, budget: float | None, budget_unit: str | None, loss: str | None, setting: list[str]
) -> Any:
    from zoorank.confirm.report import confirm_options
    from zoorank.confirm.request import ConfirmRequest
    from zoorank.errors import ZoorankError

    try:
        return ConfirmRequest.from_dict(
            confirm_options(
                top_k=top_k, budget=budget, budget_unit=budget_unit, loss=loss, settings=_params(setting)
            )
        )
    except ZoorankError as exc:
        _fail(str(exc))


def _confirm_locally(dataset: str, result: Any, request: Any, paths: dict[str, Any], *, quiet: bool) -> Any:
    """The confirmation stage in this process, on the ranking just made (checkpoints in a
    temporary folder, removed afterwards)."""
    import tempfile

    from zoorank.confirm.plan import plan_confirmation, ranking_order
    from zoorank.confirm.stage import run_confirmation
    from zoorank.data import load_dataset
    from zoorank.errors import ZoorankError
    from zoorank.rank import resolve_models

    try:
        data = load_dataset(dataset, **paths)
        plan = plan_confirmation(
            ranking_order(result.to_dict()["ranking"]),
            data.labels,
            request,
            images_per_second={r.model: r.images_per_second for r in result.results},
            scored_rows=result.sample_ids,
        )
    except ZoorankError as exc:
        _fail(str(exc))
    if not quiet:
        typer.secho(f"confirming: {plan.summary()}", err=True)
    specs = {spec.name: spec for spec in resolve_models(plan.shortlist, data_roots=paths["data_roots"])}

    def progress(model: str, rung: int, epoch: int, end: int) -> None:
        if not quiet:
            typer.secho(f"  rung {rung}: {model} epoch {epoch} of {end}", err=True)

    with tempfile.TemporaryDirectory(prefix="zoorank-confirm-") as folder:
        return run_confirmation(plan, data, specs, checkpoints=Path(folder), progress=progress)


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
    _table(["rank", "model", "value", "P(top-1)", "90% rank", *headers.values()], rows, title=title)
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


# -- one score on arrays ------------------------------------------------------------------


@app.command()
def score(
    name: str = typer.Argument(..., help="Score name (see `zoorank scores list`)."),
    features: Path | None = typer.Option(None, help="Pre-logit features, .npy (n, d)."),
    labels: Path = typer.Option(..., help="Labels, .npy (n,)."),
    logits: Path | None = typer.Option(None, help="Raw source logits, .npy (n, k)."),
    taps: Path | None = typer.Option(None, help=".npz of layer taps, one (n, c, h, w) array each, in order."),
    param: list[str] = typer.Option([], help="Score parameter k=v (repeatable)."),
    seed: int = typer.Option(0),
) -> None:
    """One score on arrays you bring; prints JSON {"score", "value", ...details}."""
    import numpy as np

    from zoorank.errors import ZoorankError
    from zoorank.scores import ScoreInputs, get_score

    def load(path: Path | None) -> Any:
        if path is None:
            return None
        try:
            with open(path, "rb") as handle:
                magic = handle.read(6)
            if magic != b"\x93NUMPY":
                _fail(f"{path} is not a .npy file (the format np.save writes); save the array with np.save")
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            _fail(f"cannot read {path}: {exc}")

    try:
        y = load(labels)
        tap_arrays = None
        if taps is not None:
            with np.load(taps, allow_pickle=False) as archive:
                tap_arrays = {key: archive[key] for key in archive.files}
        inputs = ScoreInputs(
            labels=y,
            features=load(features),
            logits=load(logits),
            taps=tap_arrays,
            tap_rows=None,  # the taps hold one row per label, in order
            seed=seed,
        )
        spec = get_score(name)
        output = spec(inputs, **_params(param))
    except ZoorankError as exc:
        _fail(str(exc))
        return
    from zoorank.rank import _jsonable

    _print_json(
        {
            "score": name,
            "value": float(output.value),
            "direction": spec.direction,
            **_jsonable(output.details),
        }
    )


@app.command()
def explain(
    dataset: str = typer.Option(..., help="Dataset reference, e.g. builtin:digits."),
    model: str = typer.Option(..., help="One model, e.g. resnet18 or ARCH@SOURCE."),
    samples_per_class: int = typer.Option(50, help="Stratified sample per class (0 = all)."),
    input_size: int = typer.Option(64, help="Input resolution in pixels (0 = the model's own)."),
    seed: int = typer.Option(0),
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder [default: ZOORANK_CACHE_DIR]."),
    data_root: list[Path] = typer.Option([], help=DATA_ROOT_HELP),
    param: list[str] = typer.Option([], help="layer_tree_fidelity parameter k=v (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole explanation as JSON."),
) -> None:
    """Why a model suits the data, layer by layer: decision trees over the binary ReLU codes of
    a small MLP head on its pre-logits (Mouton & Davel 2022), in this process."""
    from zoorank.errors import ZoorankError
    from zoorank.explain.model import EXPLAIN_SCORE, explain_model
    from zoorank.rank import RankOptions, _jsonable

    options = RankOptions(
        samples_per_class=samples_per_class,
        input_size=input_size or None,
        seed=seed,
        score_params={EXPLAIN_SCORE: _params(param)} if param else {},
    )
    try:
        found = explain_model(dataset, model, options, cache=_feature_cache(cache_dir), **_paths(data_root))
    except ZoorankError as exc:
        _fail(str(exc), code=1)
        return
    if as_json:
        _print_json(_jsonable(found))
        return
    details = found["details"]
    at_budget = details["kappa_at_budget"]
    rows = [
        {
            "layer": layer["layer"],
            "units": layer["width"],
            "constant": layer["constant_units"],
            "fidelity": layer["fidelity"],
            "accuracy": layer["accuracy"],
            "depth": layer["depth"],
            "leaves": layer["leaves"],
            f"fidelity@{details['leaf_budget']}": details["fidelity_at_budget"][i],
            f"kappa@{details['leaf_budget']}": at_budget[i],
        }
        for i, layer in enumerate(details["layers"])
    ]
    _table(
        list(rows[0]),
        rows,
        title=f"{found['model']} on {dataset}: MLP head held-out accuracy {details['mlp_accuracy']:.3f} "
        f"({details['train_rows']} train / {details['held_out_rows']} held-out rows)",
    )
    typer.echo(
        f"{EXPLAIN_SCORE} = {found['value']:.3f} (layer {details['best_layer']}; "
        f"{found['seconds']:.1f} s, features {found['feature_seconds']:.1f} s)"
    )
    best = details["layers"][details["best_layer"] - 1]
    for layer in details["layers"]:
        if layer["note"]:
            typer.secho(layer["note"], fg=typer.colors.YELLOW)
    typer.echo(f"\nlayer {best['layer']} tree (full tree: depth {best['depth']}, {best['leaves']} leaves):")
    typer.echo(best["rules"])
    for split in best["splits"]:
        top = ", ".join(f"feature {f['feature']} ({f['share']:.1%})" for f in split["top_features"])
        typer.echo(f"{split['unit']} (on for {split['on_fraction']:.0%} of rows) is driven by {top}")


# -- client of a running server ----------------------------------------------------------

jobs_app = typer.Typer(no_args_is_help=True, help="Jobs on a running server (--server URL).")
app.add_typer(jobs_app, name="jobs")
TERMINAL_STATUSES = tuple(TERMINAL)
SERVER_HELP = "Base URL of a running zoorank API [default: ZOORANK_SERVER, else http://127.0.0.1:8000]."
CSV_HELP = "Print the table as CSV (zoorank.export lists the columns)."


UNREACHABLE_EXIT = 3  # the server could not be reached (2: the request was refused, 1: it failed)


def _http(given: str | None) -> Any:
    """An HTTP client for ``--server`` or ``ZOORANK_SERVER``, with ``ZOORANK_API_KEY`` as the
    bearer key when set (:class:`zoorank.settings.ClientSettings`). A server that cannot be
    reached ends the command with one line and exit code 3."""
    import httpx
    from pydantic import ValidationError

    try:
        settings = ClientSettings.load(given)
    except ValidationError as exc:
        _fail(_refused(exc))
        raise  # unreachable: _fail exits
    server = settings.server

    class Client(httpx.Client):
        base = server  # for links to the server's pages

        def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
            try:
                return super().request(*args, **kwargs)
            except httpx.TransportError as exc:
                _fail(
                    f"cannot reach the zoorank server at {server} ({type(exc).__name__}: {exc});"
                    " start one with `zoorank run`, or pass --server / ZOORANK_SERVER",
                    code=UNREACHABLE_EXIT,
                )
                raise  # unreachable: _fail exits

    key = settings.api_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(base_url=server, headers=headers, timeout=60)


def _answer(response: Any, expected: int | tuple[int, ...] = 200) -> Any:
    """The JSON body, or the problem's detail printed and exit 1 (4xx: 2)."""
    codes = expected if isinstance(expected, tuple) else (expected,)
    if response.status_code in codes:
        return response.json()
    try:
        body = response.json()
        detail = body.get("detail") or body
        field = f" (field {body['field']})" if body.get("field") else ""
    except ValueError:
        detail, field = response.text[:300], ""
    _fail(f"{response.status_code}: {detail}{field}", code=2 if 400 <= response.status_code < 500 else 1)


def _print_job(job: dict[str, Any]) -> None:
    if job.get("kind") == "validation" and job.get("ranking"):
        truth = job["ranking"]
        _table(
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
            _table(
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
        _table(
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


@app.command()
def submit(
    dataset: str = typer.Option(..., help="Dataset reference, e.g. builtin:digits."),
    server: str | None = typer.Option(None, help=SERVER_HELP),
    models: str | None = typer.Option(None, help="Comma-separated models (default: the built-in zoo)."),
    scores: str | None = typer.Option(
        None, help="Comma-separated scores (default: the default ranking's own scores)."
    ),
    samples_per_class: int | None = typer.Option(None, help="Stratified sample per class (0 = all)."),
    input_size: int | None = typer.Option(None, help="Input resolution in pixels."),
    wait: bool = typer.Option(False, "--wait", help="Show progress until the job ends, then its ranking."),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Submit a ranking job to a running server (HTTP); with --wait, follow it to the end."""
    import time

    from tqdm import tqdm

    options = {
        k: v
        for k, v in {"samples_per_class": samples_per_class, "input_size": input_size}.items()
        if v is not None
    }
    body: dict[str, Any] = {
        "dataset": dataset,
        "models": split_option(models),
        "scores": split_option(scores),
    }
    if options:
        body["options"] = options
    with _http(server) as client:
        job = _answer(client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None}), 202)
        if not wait:
            _print_json(job) if as_json else typer.echo(
                f"job {job['id']} {job['status']}: {client.base}/jobs/{job['id']}"
            )
            return
        bar = tqdm(total=0, unit="img", disable=as_json or not sys.stderr.isatty(), file=sys.stderr)
        while job["status"] not in TERMINAL_STATUSES:
            time.sleep(1.0)
            job = _answer(client.get(f"/v1/jobs/{job['id']}"))
            bar.total = sum(p["images_total"] for p in job["progress"])
            bar.n = sum(p["images_done"] for p in job["progress"])
            bar.set_description(
                f"{job['status']} {sum(p['status'] == 'succeeded' for p in job['progress'])}/"
                f"{len(job['progress'])} models"
            )
            bar.refresh()
        bar.close()
    if as_json:
        _print_json(job)
    else:
        _print_job(job)
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
    with _http(server) as client:
        listing = _answer(client.get("/v1/jobs", params=params))
    if as_json:
        _print_json(listing)
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
    _table(["id", "status", "dataset", "models", "created"], rows, title=f"{listing['count']} jobs")


@jobs_app.command("show")
def jobs_show(
    job_id: str = typer.Argument(...),
    server: str | None = typer.Option(None, help=SERVER_HELP),
    as_json: bool = typer.Option(False, "--json"),
    as_csv: bool = typer.Option(False, "--csv", help=CSV_HELP),
) -> None:
    """One job: progress, or its ranking once it has one."""
    with _http(server) as client:
        if as_csv:
            _print_csv(client.get(f"/v1/jobs/{job_id}", params={"format": "csv"}))
            return
        job = _answer(client.get(f"/v1/jobs/{job_id}"))
    _print_json(job) if as_json else _print_job(job)


def _print_csv(response: Any) -> None:
    """A CSV answer of the server, as it came; an error answer as :func:`_answer` prints it."""
    if response.status_code != 200:
        _answer(response)
    typer.echo(response.text, nl=False)


@app.command("leaderboard")
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
    with _http(server) as client:
        if as_csv:
            _print_csv(client.get("/v1/leaderboard", params={**params, "format": "csv"}))
            return
        board = _answer(client.get("/v1/leaderboard", params=params))
    if as_json:
        _print_json(board)
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
    _table(
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
    with _http(server) as client:
        job = _answer(client.post(f"/v1/jobs/{job_id}/cancel"))
    typer.echo(f"job {job['id']} {job['status']}")


@jobs_app.command("delete")
def jobs_delete(
    job_id: str = typer.Argument(...),
    server: str | None = typer.Option(None, help=SERVER_HELP),
) -> None:
    """Delete a job with its results, confirmations and their files (a job that has not ended is
    cancelled first)."""
    with _http(server) as client:
        response = client.delete(f"/v1/jobs/{job_id}")
        if response.status_code != 204:
            _answer(response, 204)
    typer.echo(f"job {job_id} deleted")


@app.command("confirm")
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
        top_k=top_k, budget=budget, budget_unit=budget_unit, loss=loss, settings=_params(setting)
    )
    with _http(server) as client:
        if cancel:
            confirmation = _answer(client.post(f"/v1/jobs/{job_id}/confirm/cancel"))
        elif show:
            confirmation = _answer(client.get(f"/v1/jobs/{job_id}/confirm"))
        elif dry_run:
            plan = _answer(client.post(f"/v1/jobs/{job_id}/confirm", json={**body, "dry_run": True}))
            _print_json(plan) if as_json else typer.echo(f"dry run: {plan['summary']}")
            return
        else:
            confirmation = _answer(client.post(f"/v1/jobs/{job_id}/confirm", json=body), 202)
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
            confirmation = _answer(client.get(f"/v1/jobs/{job_id}/confirm"))
    if as_json:
        _print_json(confirmation)
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


# -- ground truth and benchmarks (issue 7: zoorank.validate, benchmarks/) ----------------


@app.command("validate")
def validate_command(
    dataset: str = typer.Option(..., help="Dataset reference, e.g. builtin:digits."),
    models: str | None = typer.Option(None, help="Comma-separated models (default: the built-in zoo)."),
    scores: str | None = typer.Option(
        None, help="Comma-separated scores (default: the default ranking's own scores; '' for none)."
    ),
    mode: str = typer.Option(DEFAULT_MODE, help="linear (frozen backbone) or finetune (every weight)."),
    loss: str = typer.Option(DEFAULT_LOSS, help="ce or powergrad (finetune only)."),
    alpha: float = typer.Option(DEFAULT_ALPHA, help="PowerGrad alpha in (0, 1]."),
    seeds: str = typer.Option(",".join(map(str, DEFAULT_SEEDS)), help="Comma-separated training seeds."),
    setting: list[str] = typer.Option(
        [], help="Training setting k=v (repeatable), e.g. epochs=3, input_size=32."
    ),
    resamples: int = typer.Option(1000, help="Bootstrap resamples over models (0: none)."),
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder [default: ZOORANK_CACHE_DIR]."),
    data_root: list[Path] = typer.Option([], help=DATA_ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
) -> None:
    """Ground truth (fine-tune or linear probe) and each score's agreement with it."""
    from zoorank.errors import ZoorankError
    from zoorank.validate import validate

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        _fail(f"--seeds takes comma-separated integers, got {seeds!r}")
        return
    score_list = [] if scores is not None and not scores.strip() else split_option(scores)

    def on_model(stage: str, name: str, index: int, total: int) -> None:
        if not as_json:
            message = f"[{stage} {index + 1}/{total}] {name}"
            typer.secho(message, err=True, fg=typer.colors.BRIGHT_BLACK)

    try:
        result = validate(
            dataset,
            split_option(models),
            mode=mode,
            loss=loss,
            alpha=alpha,
            seeds=seed_list,
            scores=score_list,
            settings=_params(setting),
            resamples=resamples,
            cache=_feature_cache(cache_dir),
            **_paths(data_root),
            on_model=on_model,
        )
    except ZoorankError as exc:
        _fail(str(exc))
        return
    payload = result.to_dict()  # its "warnings" too
    if as_json:
        _print_json(payload)
        return
    title = f"{dataset}: {mode} ({loss}), seeds {seed_list}, {result.seconds:.0f} s"
    _table(["model", "accuracy", "accuracy_std", "error"], payload["ground_truth"], title=title)
    statistics = ["weighted_tau", "kendall_tau", "pearson_r"]
    if payload["agreement"]:
        # An undefined statistic is marked, never blank; a tie for first names no model.
        rows = []
        for row in payload["agreement"]:
            mark = "tie (undefined)" if (row["undefined"] or "").startswith("tie") else "undefined"
            cells = {**row, **{s: mark for s in statistics if row[s] is None}}
            if row["top1_tied"]:
                cells["top1_model"] = f"tie of {len(row['top1_tied'])}"
            rows.append(cells)
        columns = ["score", "direction", "n_models", *statistics, "top1_regret", "top1_model"]
        _table(columns, rows, title="scores vs ground truth")
        reasons: dict[str, list[str]] = {}
        for row in payload["agreement"]:
            if row["undefined"]:
                reasons.setdefault(row["undefined"], []).append(row["score"])
        for reason, names in reasons.items():
            mark, _, why = reason.partition(": ") if reason.startswith("tie") else ("undefined", "", reason)
            typer.echo(
                f"{'tie (undefined)' if mark == 'tie' else mark} ({', '.join(names)}): {why}; with no "
                "ranking to correlate there is no τ or r (scipy's weightedtau and kendalltau give NaN)"
            )
    for statistic, best in payload["best"].items():
        name = statistic.replace("_", " ").replace("tau", "τ")
        if best["best"] is None:
            typer.echo(f"best by {name}: none. {best['note']}")
            continue
        others = ", ".join(s for s in best["tied"] if s != best["best"]) or "none"
        typer.echo(
            f"best by {name}: {best['best']} ({best['value']:+.2f}); not distinguishable from it: {others}"
        )
    for warning in payload["warnings"]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)


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
        _fail(_refused(exc))
        return
    settings.apply_network_policy()


def main() -> None:
    load_commands()()


if __name__ == "__main__":
    main()
