"""The commands that run the library in this process, no server: ``rank`` (and its
``--confirm``), ``score``, ``explain`` and ``validate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from zoorank.cli.options import (
    BUDGET_HELP,
    BUDGET_UNIT_HELP,
    CONFIRM_LOSS_HELP,
    CONFIRM_SETTING_HELP,
    DATA_ROOT_HELP,
    DATASET_HELP,
    INPUT_SIZE_HELP,
    MODELS_HELP,
    SAMPLES_HELP,
    SCORES_HELP,
    SEED_HELP,
    TOP_K_HELP,
    fail,
    feature_cache,
    parse_params,
    rank_request_body,
    read_paths,
    split_option,
)
from zoorank.cli.render import print_json, print_ranking, print_table
from zoorank.validation_request import DEFAULT_ALPHA, DEFAULT_LOSS, DEFAULT_MODE, DEFAULT_SEEDS


def rank(
    dataset: str = typer.Option(..., help=DATASET_HELP),
    models: str | None = typer.Option(None, help=MODELS_HELP),
    scores: str | None = typer.Option(None, help=SCORES_HELP),
    samples_per_class: int | None = typer.Option(None, help=SAMPLES_HELP),
    input_size: int | None = typer.Option(None, help=INPUT_SIZE_HELP),
    seed: int | None = typer.Option(None, help=SEED_HELP),
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder (default: ZOORANK_CACHE_DIR)."),
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
    from zoorank.rank import rank as run_rank
    from zoorank.rank_request import RankRequest

    score_params: dict[str, dict[str, str]] = {}
    for key, value in parse_params(param).items():
        if "." not in key:
            fail(f"--param takes SCORE.k=v, got {key!r}")
        score, name = key.split(".", 1)
        score_params.setdefault(score, {})[name] = value
    given = {
        "samples_per_class": samples_per_class,
        "input_size": input_size,
        "seed": seed,
        "score_params": score_params or None,
        "bootstrap_resamples": bootstrap_resamples,
    }
    try:  # the rules of POST /v1/jobs and zoorank submit
        request = RankRequest.from_dict(rank_request_body(dataset, models, scores, given))
    except ZoorankError as exc:
        fail(str(exc))
        return
    if as_csv and (as_json or confirm):
        fail("--csv prints the ranking alone: leave out --json and --confirm")
    confirm_request = None
    if confirm:
        confirm_request = _confirm_request(top_k, budget, budget_unit, loss, confirm_setting)
    elif any(v is not None for v in (top_k, budget, budget_unit, loss)) or confirm_setting:
        fail("--top-k, --budget, --budget-unit, --loss and --confirm-setting need --confirm")
    bar = tqdm(total=0, unit="img", disable=as_json or not sys.stderr.isatty(), file=sys.stderr)

    def on_model(name: str, index: int, total: int) -> None:
        bar.set_description(f"[{index + 1}/{total}] {name}")

    def progress(images: int) -> None:
        bar.total = (bar.total or 0) + (0 if bar.n + images <= (bar.total or 0) else images)
        bar.update(images)

    try:
        result = run_rank(
            request.dataset,
            request.models,
            request.scores,
            request.options,
            cache=feature_cache(cache_dir),
            **read_paths(data_root),
            on_model=on_model,
            progress=progress,
        )
    except ZoorankError as exc:
        bar.close()
        fail(str(exc))
        return
    bar.close()
    failed = [r for r in result.results if r.error]
    answer = None
    if confirm_request is not None and len(failed) < len(result.results):
        answer = _confirm_locally(dataset, result, confirm_request, read_paths(data_root), quiet=as_json)
    if as_csv:
        from zoorank.export import rank_result_table, to_csv

        typer.echo(to_csv(rank_result_table(result.to_dict())), nl=False)
        if failed and len(failed) == len(result.results):
            raise typer.Exit(1)
        return
    if as_json:
        print_json({**result.to_dict(), **({"confirmation": answer} if answer is not None else {})})
        if failed and len(failed) == len(result.results):
            raise typer.Exit(1)
        return
    if failed and len(failed) == len(result.results):
        for r in failed:
            typer.secho(f"{r.model} failed: {r.error}", fg=typer.colors.RED, err=True)
        fail(f"every model failed ({len(failed)} of {len(failed)}); nothing was ranked", code=1)
    print_ranking(
        result.to_dict()["ranking"],
        {r.model: {s: v.value for s, v in r.scores.items()} for r in result.results},
        [r.model for r in result.results if r.error],
        title=f"{dataset}: {len(result.sample_ids)} images, "
        f"{request.options.input_size or 'native'} px, {result.seconds:.1f} s",
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
                top_k=top_k, budget=budget, budget_unit=budget_unit, loss=loss, settings=parse_params(setting)
            )
        )
    except ZoorankError as exc:
        fail(str(exc))


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
        fail(str(exc))
    if not quiet:
        typer.secho(f"confirming: {plan.summary()}", err=True)
    specs = {spec.name: spec for spec in resolve_models(plan.shortlist, data_roots=paths["data_roots"])}

    def progress(model: str, rung: int, epoch: int, end: int) -> None:
        if not quiet:
            typer.secho(f"  rung {rung}: {model} epoch {epoch} of {end}", err=True)

    with tempfile.TemporaryDirectory(prefix="zoorank-confirm-") as folder:
        return run_confirmation(plan, data, specs, checkpoints=Path(folder), progress=progress)


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
                fail(f"{path} is not a .npy file (the format np.save writes); save the array with np.save")
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            fail(f"cannot read {path}: {exc}")

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
        output = spec(inputs, **parse_params(param))
    except ZoorankError as exc:
        fail(str(exc))
        return
    from zoorank.rank import jsonable

    print_json(
        {
            "score": name,
            "value": float(output.value),
            "direction": spec.direction,
            **jsonable(output.details),
        }
    )


def explain(
    dataset: str = typer.Option(..., help="Dataset reference, e.g. builtin:digits."),
    model: str = typer.Option(..., help="One model, e.g. resnet18 or ARCH@SOURCE."),
    samples_per_class: int = typer.Option(50, help="Stratified sample per class (0 = all)."),
    input_size: int = typer.Option(64, help="Input resolution in pixels (0 = the model's own)."),
    seed: int = typer.Option(0),
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder (default: ZOORANK_CACHE_DIR)."),
    data_root: list[Path] = typer.Option([], help=DATA_ROOT_HELP),
    param: list[str] = typer.Option([], help="layer_tree_fidelity parameter k=v (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole explanation as JSON."),
) -> None:
    """Why a model suits the data, layer by layer: decision trees over the binary ReLU codes of
    a small MLP head on its pre-logits (Mouton & Davel 2022), in this process."""
    from zoorank.errors import ZoorankError
    from zoorank.explain.model import EXPLAIN_SCORE, explain_model
    from zoorank.rank import RankOptions, jsonable

    options = RankOptions(
        samples_per_class=samples_per_class,
        input_size=input_size or None,
        seed=seed,
        score_params={EXPLAIN_SCORE: parse_params(param)} if param else {},
    )
    try:
        found = explain_model(
            dataset, model, options, cache=feature_cache(cache_dir), **read_paths(data_root)
        )
    except ZoorankError as exc:
        fail(str(exc), code=1)
        return
    if as_json:
        print_json(jsonable(found))
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
    print_table(
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
    cache_dir: Path | None = typer.Option(None, help="Feature cache folder (default: ZOORANK_CACHE_DIR)."),
    data_root: list[Path] = typer.Option([], help=DATA_ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
) -> None:
    """Ground truth (fine-tune or linear probe) and each score's agreement with it."""
    from zoorank.errors import ZoorankError
    from zoorank.groundtruth import validate

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds takes comma-separated integers, got {seeds!r}")
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
            settings=parse_params(setting),
            resamples=resamples,
            cache=feature_cache(cache_dir),
            **read_paths(data_root),
            on_model=on_model,
        )
    except ZoorankError as exc:
        fail(str(exc))
        return
    payload = result.to_dict()  # its "warnings" too
    if as_json:
        print_json(payload)
        return
    title = f"{dataset}: {mode} ({loss}), seeds {seed_list}, {result.seconds:.0f} s"
    print_table(["model", "accuracy", "accuracy_std", "error"], payload["ground_truth"], title=title)
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
        print_table(columns, rows, title="scores vs ground truth")
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
