"""Which modules of a timm model are tapped (hooked) for layer-wise scores such as Betti decay.

Following arXiv 2311.04592's released code for ResNet-18 (L = 11 points): the stem
convolution, its normalisation, its activation, then the output of every residual block.
Families:

* ResNet (``conv1``, ``bn1``, ``act1``, ``layer1..4``): ``conv1, bn1, act1, layerK.J``.
* EfficientNet / MobileNet (timm's ``EfficientNet`` class: ``conv_stem``, ``bn1`` a fused
  ``BatchNormAct2d``, ``blocks`` stages of blocks): ``conv_stem``, ``bn1.drop`` (the
  normalised map, before the activation), ``bn1.act`` (after it), then ``blocks.S.J``.
* Anything else: the first ``Conv2d`` then the modules timm lists in ``feature_info``
  (stage outputs) -- "stem + every stage", coarser than every block.
"""

from __future__ import annotations

from torch import nn

from zoorank.errors import InvalidInputError


def tap_points(model: nn.Module) -> list[str]:
    """Names of the modules to hook, in network order (names from ``model.named_modules()``)."""
    modules = dict(model.named_modules())
    if {"conv1", "bn1", "act1", "layer1"} <= modules.keys():
        blocks = [
            name
            for name in modules
            if name.count(".") == 1 and name.split(".")[0] in {"layer1", "layer2", "layer3", "layer4"}
        ]
        return ["conv1", "bn1", "act1", *blocks]
    if {"conv_stem", "bn1", "blocks"} <= modules.keys():
        stem_norm = ["bn1.drop", "bn1.act"] if "bn1.act" in modules else ["bn1"]
        blocks = [name for name in modules if name.startswith("blocks.") and name.count(".") == 2]
        return ["conv_stem", *stem_norm, *blocks]
    first_conv = next((name for name, m in modules.items() if isinstance(m, nn.Conv2d)), None)
    info = getattr(model, "feature_info", None)
    if first_conv is None or info is None:
        raise InvalidInputError(
            f"cannot find layer taps for {type(model).__name__}: no Conv2d or no timm feature_info",
            field="models",
        )
    stages = [entry["module"].replace("_", ".") if entry["module"] not in modules else entry["module"]
              for entry in info]
    return [first_conv, *[s for s in stages if s in modules and s != first_conv]]
