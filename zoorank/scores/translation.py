"""Translation sensitivity: cosine similarity of pre-logits under small pixel shifts.

Myburgh, Mouton, Davel. "Tracking Translation Invariance in CNNs", SACAIR 2020 (arXiv
2104.05997): how far a network's representation of an image stays the same when the image
is shifted, measured by the cosine similarity of the representations.

For an image ``x``, the pre-logit map ``φ`` and a shift ``S_{k,axis}`` by ``k`` pixels along
the height or the width axis,

    s_k(x) = cos(φ(x), φ(S_{k,axis} x)) = φ(x)·φ(Sx) / (||φ(x)|| ||φ(Sx)||) ,

and the score is the mean of ``s_k`` over the sampled images, ``k = 1..K`` and both axes.
Higher means more invariant (the name says what is measured; the value is a similarity).

Padding -- what enters at the edge the content leaves:

* ``circular`` (default): ``torch.roll``, the content wraps around. A model that is exactly
  invariant to circular shifts (e.g. global average pooling of the input) scores 1.
* ``zeros``: zeros enter (in preprocessed units, i.e. the normalisation mean for most models).
* ``edge``: the border row/column is repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import (
    check_images,
    check_model_output,
    content_keys,
    content_order_subset,
)
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels
from zoorank.scores.registry import ScoreSpec, register_score

Padding = Literal["circular", "zeros", "edge"]
_PADDINGS = ("circular", "zeros", "edge")


def shift_images(images: torch.Tensor, *, dy: int, dx: int, padding: Padding = "circular") -> torch.Tensor:
    """``images (b, c, h, w)`` shifted down by ``dy``, right by ``dx`` pixels (negative: up, left).

    Raises:
        InvalidInputError: unknown ``padding``; a shift as large as the image.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
        >>> shift_images(x, dy=0, dx=1).flatten().tolist()
        [3.0, 0.0, 1.0, 2.0]
        >>> shift_images(x, dy=0, dx=1, padding="edge").flatten().tolist()
        [0.0, 0.0, 1.0, 2.0]
    """
    if padding not in _PADDINGS:
        raise InvalidInputError(
            f"padding must be one of {', '.join(_PADDINGS)}, got {padding!r}", field="params"
        )
    h, w = images.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise InvalidInputError(
            f"shift ({dy}, {dx}) is not smaller than the image ({h}, {w})", field="params"
        )
    if padding == "circular":
        return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
    # pad (left, right, top, bottom) by the shift on the side content moves away from, then crop
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    mode = "constant" if padding == "zeros" else "replicate"
    padded = F.pad(images, pad, mode=mode)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


def translation_similarities(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    *,
    max_shift: int = 4,
    padding: Padding = "circular",
    batch_size: int = 16,
) -> np.ndarray:
    """Cosine similarities ``(s, 2, K)``: image, axis (0 = height, 1 = width), shift ``k = 1..K``.

    Formula: ``cos(φ(x), φ(S_{k,axis} x))`` (module docstring).

    Args:
        model: ``(b, c, h, w) float32 -> (b, d)`` pre-logits.
        images: ``(s, c, h, w)`` float32.
        max_shift: ``K >= 1``.
        padding: ``circular``, ``zeros`` or ``edge``.
        batch_size: originals per forward pass (each with its ``2K`` shifted copies).

    Raises:
        InvalidInputError: ``max_shift < 1``, bad padding, non-finite model output.

    Example:
        >>> mean_pool = lambda x: x.mean(dim=(2, 3))
        >>> imgs = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
        >>> bool(np.allclose(translation_similarities(mean_pool, imgs, max_shift=2), 1.0))
        True
    """
    if max_shift < 1:
        raise InvalidInputError(f"max_shift must be at least 1, got {max_shift}", field="params")
    shifts = [(k, 0) for k in range(1, max_shift + 1)] + [(0, k) for k in range(1, max_shift + 1)]
    out = np.empty((images.shape[0], 2, max_shift))
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            b = x.shape[0]
            batch = torch.cat([x, *[shift_images(x, dy=dy, dx=dx, padding=padding) for dy, dx in shifts]])
            phi = check_model_output(model(batch), batch.shape[0]).detach().cpu().double()
            phi = phi.reshape(1 + len(shifts), b, -1)
            cos = F.cosine_similarity(phi[:1], phi[1:], dim=2, eps=1e-12)  # (2K, b)
            out[start : start + b] = cos.T.reshape(b, 2, max_shift).numpy()
    return out


def _compute(
    inputs: ScoreInputs, *, samples: int, max_shift: int, padding: str, batch_size: int
) -> ScoreOutput:
    assert inputs.images is not None and inputs.model is not None
    labels = check_labels(inputs.labels, min_classes=1)
    images = check_images(inputs.images, labels.shape[0])
    subset = content_order_subset(content_keys(images, seed=inputs.seed), labels, size=samples)
    sims = translation_similarities(
        inputs.model,
        images[subset],
        max_shift=max_shift,
        padding=cast(Padding, padding),
        batch_size=batch_size,
    )
    details = {
        "samples": int(subset.size),
        "padding": padding,
        "by_shift": sims.mean(axis=(0, 1)).round(6).tolist(),  # k = 1..K
        "by_axis": {"height": float(sims[:, 0].mean()), "width": float(sims[:, 1].mean())},
        "min": float(sims.min()),
    }
    return ScoreOutput(value=float(sims.mean()), details=details)


register_score(
    ScoreSpec(
        name="translation_sensitivity",
        family="diagnostic",
        compute=_compute,
        needs=frozenset({"images", "model"}),
        direction="higher",
        paper=(
            "Myburgh, Mouton, Davel 2020, Tracking Translation Invariance in CNNs (SACAIR; arXiv 2104.05997)"
        ),
        cost="expensive",
        params={"samples": 32, "max_shift": 4, "padding": "circular", "batch_size": 8},
        description=(
            "Mean cosine similarity between the pre-logits of an image and of its copies shifted "
            "by 1..K pixels along each axis (higher = more translation-invariant)."
        ),
    )
)
