"""What the library's validators accept, written as JSON Schema for the API's OpenAPI document, so
that the schema admits what the API accepts and generated clients know the limits.

The rules stay where they are enforced (``RankOptions``, ``TrainSettings``, ``check_request``,
``parse_dataset_ref``): the library, the CLI and the API answer the same message for the same
mistake. These schemas only describe them (pydantic's ``WithJsonSchema`` / ``json_schema_extra``,
validation unchanged), from the same constants where the rule has one; the fuzz test
(``tests/unit/test_fuzz_api``, schemathesis' positive-data and negative-data checks) fails when
a description and its rule part.

What no schema can say is left out: whether a reference names something that exists (a dataset,
a model, a weight file, an option set, a job in the right state), what an archive holds, rules
across two fields whose bound is the other field (``samples_per_class`` and
``min_samples_per_class``) and rules that depend on the data (a split larger than a class).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import WithJsonSchema

from zoorank.data.refs import reference_pattern
from zoorank.groundtruth.powergrad import LOSSES
from zoorank.groundtruth.training import MODES, OPTIMIZERS
from zoorank.rank import BOOTSTRAP_MAX, INPUT_SIZE_RANGE
from zoorank.scores import get_score, list_scores
from zoorank.settings import DEVICES
from zoorank.validation_request import MAX_SEEDS

DATASET_REF: dict[str, Any] = {"pattern": reference_pattern()}


def score_names() -> dict[str, Any]:
    """A score's name: one of the registered scores."""
    return {"type": "string", "enum": list_scores()}


def score_parameters() -> dict[str, Any]:
    """Per score, the names of its parameters (``ScoreSpec.resolve_params`` refuses others); their
    values are the score's to check (JSON or strings from the CLI, converted to the default's
    type)."""
    return {
        name: {
            "type": "object",
            "additionalProperties": False,
            "properties": {p: {} for p in get_score(name).params},
        }
        for name in list_scores()
    }


def rank_options() -> dict[str, Any]:
    """``RankOptions.from_dict`` / ``validate``: known names, types, ranges."""
    low, high = INPUT_SIZE_RANGE
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "samples_per_class": {"type": "integer", "minimum": 0, "description": "0: every image"},
            "input_size": {
                "anyOf": [
                    {"type": "integer", "minimum": low, "maximum": high},
                    {"const": 0},
                    {"type": "null"},
                ],
                "description": "pixels; 0 or null: each model's own input size",
            },
            "tap_images_per_class": {"type": "integer", "minimum": 0},
            "seed": {"type": "integer", "minimum": 0},
            "batch_size": {"type": "integer", "minimum": 1},
            "device": {"enum": list(DEVICES)},
            "min_samples_per_class": {
                "type": "integer",
                "description": "samples_per_class must be 0 or at least this",
            },
            "score_params": {
                "type": "object",
                "properties": score_parameters(),
                "additionalProperties": False,
                "description": "score -> its parameters (GET /v1/scores lists each score's defaults)",
            },
            "bootstrap_resamples": {"type": "integer", "minimum": 0, "maximum": BOOTSTRAP_MAX},
        },
        "examples": [{"samples_per_class": 50, "input_size": 64}],
    }


def train_settings(*, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``TrainSettings.from_dict`` / ``validate`` (``keys``: only these settings)."""
    properties: dict[str, Any] = {
        "train_per_class": {"type": "integer", "minimum": 2},
        "val_per_class": {"type": "integer", "minimum": 1},
        "test_per_class": {"type": "integer"},
        "split_seed": {"type": "integer", "minimum": 0},
        "input_size": {"type": "integer", "minimum": INPUT_SIZE_RANGE[0], "maximum": INPUT_SIZE_RANGE[1]},
        "epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
        "batch_size": {"type": "integer", "minimum": 2},
        "optimizer": {"enum": list(OPTIMIZERS)},
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "weight_decay": {"type": "number", "minimum": 0},
        "momentum": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "patience": {"type": "integer", "minimum": 1},
        "min_epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
        "device": {"enum": list(DEVICES)},
    }
    if keys is not None:
        properties = {k: v for k, v in properties.items() if k in keys}
    return {"type": "object", "additionalProperties": False, "properties": properties}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


MODE = {"enum": list(MODES)}
LOSS = {"enum": list(LOSSES)}
SEEDS = {"minItems": 1, "maxItems": MAX_SEEDS, "uniqueItems": True}
# check_mode: the linear mode fits a logistic regression, so its loss is ce; PowerGrad's alpha
# is in (0, 1].
LINEAR_IS_CE = {
    "anyOf": [
        {"required": ["mode"], "properties": {"mode": {"const": "finetune"}}},
        {"properties": {"loss": {"const": "ce"}}},
    ]
}
ALPHA = {"exclusiveMinimum": 0, "maximum": 1}
# POST /v1/models: register_model takes every source parse_model_ref does but ``offline`` (the
# offline weights are the built-in zoo's), and ARCH@SOURCE has one "@"; whether the file or hub
# id exists is for the loader.
WEIGHTS = {"pattern": r"^(random|timm|timm:[^\x00@]+|file:[^\x00@]*\.(safetensors|pth|pt))$"}
ARCHITECTURE = {"pattern": r"^[a-z0-9][a-z0-9_.]{0,99}$"}  # zoorank.zoo.specs._ARCH; timm must know it
ALPHA_FOR_POWERGRAD = {"anyOf": [{"properties": {"loss": {"const": "ce"}}}, {"properties": {"alpha": ALPHA}}]}

# Request fields whose rules live in the library: typed loosely for validation (the library
# answers), described exactly for the schema.
TrainSettingsField = Annotated[dict[str, Any] | None, WithJsonSchema(nullable(train_settings()))]
RankOptionsField = Annotated[dict[str, Any] | None, WithJsonSchema(nullable(rank_options()))]
ScoreList = Annotated[
    list[str] | None, WithJsonSchema(nullable({"type": "array", "items": score_names(), "minItems": 1}))
]
ScoreSelection = Annotated[
    list[str] | None, WithJsonSchema(nullable({"type": "array", "items": score_names()}))
]
ModelList = Annotated[
    list[str] | None,
    WithJsonSchema(nullable({"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1})),
]
