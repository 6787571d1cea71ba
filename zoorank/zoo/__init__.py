"""Model specs (timm architecture + weight source), the built-in zoo, and weight loading."""

from zoorank.zoo.load import create_model, weights_digest
from zoorank.zoo.specs import (
    ModelSpec,
    get_model_spec,
    list_models,
    parse_model_ref,
    register_model,
)

__all__ = [
    "ModelSpec",
    "create_model",
    "get_model_spec",
    "list_models",
    "parse_model_ref",
    "register_model",
    "weights_digest",
]
