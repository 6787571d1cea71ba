"""What the commands share: reading option values, their help texts, the settings' paths and
cache, and ending a command with one error line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zoorank.confirm.request import DEFAULT_TOP_K
from zoorank.rank_request import DEFAULT_INPUT_SIZE, DEFAULT_SAMPLES_PER_CLASS, DEFAULT_SEED
from zoorank.settings import CoreSettings

if TYPE_CHECKING:
    from zoorank.features.cache import FeatureCache


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def refused(exc: Any) -> str:
    """A pydantic ``ValidationError`` of the settings as one line: each message names its variable."""
    return "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())


def split_option(value: str | None) -> list[str] | None:
    """A comma-separated option: None when not given; an empty string gives [] (which the
    library refuses with a clear message, as the API does)."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def parse_params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--param takes k=v, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


# A ranking request's options; the defaults are RankRequest's (None: not given, so the default).
DATASET_HELP = "Dataset reference, e.g. builtin:digits."
MODELS_HELP = "Comma-separated models (default: the built-in zoo)."
SCORES_HELP = "Comma-separated scores (default: the default ranking's own scores)."
SAMPLES_HELP = f"Stratified sample per class (0 = all) (default: {DEFAULT_SAMPLES_PER_CLASS})."
INPUT_SIZE_HELP = f"Input resolution in pixels (0 = each model's own) (default: {DEFAULT_INPUT_SIZE})."
SEED_HELP = f"Seed of the stratified sample (default: {DEFAULT_SEED})."


def rank_request_body(
    dataset: str, models: str | None, scores: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """A ranking request as ``zoorank.rank_request.RankRequest.from_dict`` and ``POST /v1/jobs``
    take it: what the user gave, nothing else (the request's own defaults fill the rest)."""
    body: dict[str, Any] = {
        "dataset": dataset,
        "models": split_option(models),
        "scores": split_option(scores),
    }
    body["options"] = {name: value for name, value in options.items() if value is not None} or None
    return {name: value for name, value in body.items() if value is not None}


DATA_ROOT_HELP = "Also read folder:/npz: datasets and weight files under this folder (repeatable)."


CACHE_DIR_HELP = "Feature cache folder (default: ZOORANK_CACHE_DIR)."


TOP_K_HELP = (
    "Confirmation: how many of the best-ranked models to fine-tune"
    f" (default: {DEFAULT_TOP_K}, chosen by benchmarks/confirm.py)."
)


BUDGET_HELP = "Confirmation: a cap in --budget-unit (default: none, the schedule's own cost)."


BUDGET_UNIT_HELP = "Confirmation: images (image passes) or seconds (estimated) (default: images)."


CONFIRM_LOSS_HELP = "Confirmation: the fine-tuning loss, ce or powergrad (default: ce)."


CONFIRM_SETTING_HELP = "Confirmation: a trainer setting k=v, e.g. epochs=8, val_per_class=20 (repeatable)."


def feature_cache(given: Path | None) -> FeatureCache:
    """ZOORANK_CACHE_DIR (or ``--cache-dir``), bounded by ZOORANK_CACHE_MAX_MB."""
    from zoorank.features.cache import FeatureCache

    return FeatureCache.from_settings(CoreSettings(), root=given)


def read_paths(extra: list[Path]) -> dict[str, Any]:
    """Where a command may read from, by the server's rules and settings: ZOORANK_DATA_ROOTS
    (default VAR_DIR/data) plus any ``--data-root`` for datasets and weight files, and the
    server's upload folder for ``upload:ID``."""
    settings = CoreSettings()
    roots = [*settings.data_roots, *(p.expanduser().resolve() for p in extra)]
    return {"data_roots": roots, "upload_dir": settings.upload_dir}
