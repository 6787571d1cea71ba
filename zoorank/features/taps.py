"""Which modules of a timm model are tapped (hooked) for layer-wise scores such as Betti decay.

arXiv 2311.04592's released code taps ResNet-18 at L = 11 points: the stem convolution, its
batch norm, its ReLU (``children()[:1..3]``), then the output of every residual block
(``layer1.0 .. layer4.1``); the max-pool after the stem is not a tap. For other
architectures: "stem + every block" (docs/design.md §5.1). One entry of :data:`FAMILIES` per model
family, tried in order; the first whose ``matches`` holds gives the taps:

=============  ======================================  ============================================
family         recognised by                           taps, in network order
=============  ======================================  ============================================
resnet         ``conv1``, ``bn1``, ``act1``,           ``conv1, bn1, act1, layerK.J`` for every
               ``layer1..4`` (timm ``ResNet``)         block J of every stage K. resnet18: 3 + 8 =
                                                       11; resnet50: 3 + 16 = 19.
efficientnet   ``conv_stem``, ``bn1``, ``blocks``      ``conv_stem``; ``bn1.drop`` (the normalised
               (timm ``EfficientNet``,                 map: ``bn1`` is a fused ``BatchNormAct2d``,
               ``MobileNetV3``)                        norm -> drop (Identity) -> act); ``bn1.act``
                                                       (after the activation); then every block
                                                       ``blocks.S.J``. tf_efficientnet_lite0: 3 +
                                                       16 = 19; mobilenetv2_100: 3 + 17 = 20;
                                                       mobilenetv3_small_100: 3 + 12 = 15. The
                                                       head (``conv_head``, ``bn2``) is not tapped,
                                                       as the authors stop at the last block.
stages         ``stem`` and ``stages.N.blocks.M``      ``stem``, then every block
               (ConvNeXt and other timm "stages"       ``stages.N.blocks.M``.
               nets)
feature_info   anything else with a ``Conv2d`` and     the first ``Conv2d``, then the modules of
               timm ``feature_info``                   ``feature_info`` (stage outputs): coarser
                                                       than every block.
=============  ======================================  ============================================

A warning for whoever hooks these: timm's stem activations run **in place** (``ReLU(inplace=
True)`` after ``bn1``; ``ReLU6(inplace=True)`` inside ``BatchNormAct2d`` after ``bn1.drop``),
so the tensor a hook sees at ``bn1`` / ``bn1.drop`` is overwritten by the activation right
after. A hook must copy the output when it fires (``output[idx]`` with an index tensor, or
``.clone()``), not keep a view. Transformers (e.g. ViT) fall into ``feature_info`` but their
taps are token sequences ``(n, tokens, dim)``, not ``(n, c, h, w)`` maps; spatial scores
refuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from zoorank.errors import InvalidInputError

Modules = Mapping[str, nn.Module]


@dataclass(frozen=True)
class TapFamily:
    """A model family: how to recognise it and where to tap it."""

    name: str
    matches: Callable[[nn.Module, Modules], bool]
    points: Callable[[nn.Module, Modules], list[str]]


def _children_in_order(modules: Modules, parent: str) -> list[str]:
    """Names of the direct children of ``parent`` (``parent.X``), in registration order."""
    prefix = parent + "."
    return [n for n in modules if n.startswith(prefix) and "." not in n[len(prefix) :]]


def _resnet_matches(_model: nn.Module, modules: Modules) -> bool:
    return {"conv1", "bn1", "act1", "layer1", "layer4"} <= modules.keys()


def _resnet_points(_model: nn.Module, modules: Modules) -> list[str]:
    blocks = [b for k in range(1, 5) for b in _children_in_order(modules, f"layer{k}")]
    return ["conv1", "bn1", "act1", *blocks]


def _efficientnet_matches(_model: nn.Module, modules: Modules) -> bool:
    return {"conv_stem", "bn1", "blocks"} <= modules.keys()


def _efficientnet_points(_model: nn.Module, modules: Modules) -> list[str]:
    if "bn1.act" in modules:  # fused BatchNormAct2d: norm -> drop -> act
        norm = "bn1.drop" if "bn1.drop" in modules else "bn1"
        stem = ["conv_stem", norm, "bn1.act"]
    elif "act1" in modules:  # older timm: separate activation module
        stem = ["conv_stem", "bn1", "act1"]
    else:
        stem = ["conv_stem", "bn1"]
    blocks = [
        b for stage in _children_in_order(modules, "blocks") for b in _children_in_order(modules, stage)
    ]
    return [*stem, *blocks]


def _stages_matches(_model: nn.Module, modules: Modules) -> bool:
    return "stem" in modules and "stages.0.blocks.0" in modules


def _stages_points(_model: nn.Module, modules: Modules) -> list[str]:
    blocks = [
        block
        for stage in _children_in_order(modules, "stages")
        for block in _children_in_order(modules, f"{stage}.blocks")
    ]
    return ["stem", *blocks]


def _feature_info_matches(model: nn.Module, modules: Modules) -> bool:
    has_conv = any(isinstance(m, nn.Conv2d) for m in modules.values())
    return has_conv and getattr(model, "feature_info", None) is not None


def _feature_info_points(model: nn.Module, modules: Modules) -> list[str]:
    first_conv = next(name for name, m in modules.items() if isinstance(m, nn.Conv2d))
    stages = []
    info: Any = getattr(model, "feature_info", [])  # timm's FeatureInfo or a list of dicts
    for entry in info:
        name = entry["module"] if entry["module"] in modules else entry["module"].replace("_", ".")
        if name in modules and name != first_conv and name not in stages:
            stages.append(name)
    return [first_conv, *stages]


FAMILIES: tuple[TapFamily, ...] = (
    TapFamily("resnet", _resnet_matches, _resnet_points),
    TapFamily("efficientnet", _efficientnet_matches, _efficientnet_points),
    TapFamily("stages", _stages_matches, _stages_points),
    TapFamily("feature_info", _feature_info_matches, _feature_info_points),
)


def tap_family(model: nn.Module) -> TapFamily:
    """The first family of :data:`FAMILIES` that recognises ``model``.

    Raises:
        InvalidInputError: no family does (no ``Conv2d`` or no timm ``feature_info``).
    """
    modules = dict(model.named_modules())
    for family in FAMILIES:
        if family.matches(model, modules):
            return family
    raise InvalidInputError(
        f"cannot find layer taps for {type(model).__name__}: no Conv2d or no timm feature_info",
        field="models",
    )


def tap_points(model: nn.Module) -> list[str]:
    """Names of the modules to hook, in network order (names from ``model.named_modules()``).

    Example:
        >>> import timm
        >>> len(tap_points(timm.create_model("resnet18", pretrained=False)))
        11
    """
    modules = dict(model.named_modules())
    return tap_family(model).points(model, modules)
