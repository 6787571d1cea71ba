"""Static prior: the model's ImageNet top-1 accuracy, whatever the target data.

Kornblith, Shlens, Le. "Do Better ImageNet Models Transfer Better?", CVPR 2019: ImageNet
accuracy correlates with transfer accuracy, which makes it the baseline every
data-dependent score has to beat. The value is ``meta["imagenet_top1"]`` as given (percent
or fraction, as the zoo records it); the target features and labels are not read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import ScoreInputs, ScoreOutput
from zoorank.scores.registry import ScoreSpec, register_score


def imagenet_top1_prior(meta: Mapping[str, Any] | None) -> float:
    """The model's ImageNet top-1 accuracy from its metadata.

    Raises:
        InvalidInputError: no ``imagenet_top1`` entry, or one that is not a finite number.

    Example:
        >>> imagenet_top1_prior({"imagenet_top1": 76.1})
        76.1
    """
    if not meta or "imagenet_top1" not in meta or meta["imagenet_top1"] is None:
        raise InvalidInputError(
            "the model's metadata has no 'imagenet_top1'; record it in the zoo entry to use "
            "the imagenet_top1 prior",
            field="meta",
        )
    raw = meta["imagenet_top1"]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not math.isfinite(value):
        raise InvalidInputError(f"imagenet_top1 must be a finite number, got {raw!r}", field="meta")
    return value


def _compute(inputs: ScoreInputs) -> ScoreOutput:
    return ScoreOutput(value=imagenet_top1_prior(inputs.meta))


register_score(
    ScoreSpec(
        name="imagenet_top1",
        family="prior",
        compute=_compute,
        needs=frozenset({"meta"}),
        direction="higher",
        paper="Kornblith, Shlens, Le 2019, Do Better ImageNet Models Transfer Better? (CVPR)",
        cost="cheap",
        description="The model's ImageNet top-1 accuracy (static prior; ignores the target data).",
    )
)
