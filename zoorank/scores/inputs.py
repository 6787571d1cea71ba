"""What a score reads (:class:`ScoreInputs`) and what it returns (:class:`ScoreOutput`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoorank.errors import InvalidInputError


@dataclass
class ScoreInputs:
    """Everything one forward pass of a model over the target data yields.

    Attributes:
        labels: ``(n,)`` integer class labels, ``0..C-1`` after :func:`check_labels`.
        features: ``(n, d)`` pre-logit features (the input of the classifier head).
        logits: ``(n, k)`` raw source-task logits (softmax is applied by the score).
        taps: layer name -> ``(m, c, h, w)`` feature maps, taps in network order, for the
            ``m`` samples listed in ``tap_rows`` (a class-balanced subset of the ``n``).
        tap_rows: ``(m,)`` indices into ``labels`` of the samples that have taps.
        images: ``(n, c, h, w)`` float32 preprocessed inputs (for input-space scores).
        model: callable ``images (b,c,h,w) tensor -> pre-logits (b,d) tensor``, differentiable,
            for input-space scores (constrained margins, fragmentation, translation).
        meta: facts about the model (e.g. ``imagenet_top1``) for static priors.
        seed: seed for any randomness inside a score.
    """

    labels: np.ndarray
    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    taps: Mapping[str, np.ndarray] | None = None
    tap_rows: np.ndarray | None = None
    images: np.ndarray | None = None
    model: Callable[..., Any] | None = None
    meta: Mapping[str, Any] | None = None
    seed: int = 0


@dataclass
class ScoreOutput:
    """A score's raw value plus anything worth storing beside it (JSON-serialisable)."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


def check_labels(labels: np.ndarray, *, min_classes: int = 2, min_per_class: int = 1) -> np.ndarray:
    """Labels as ``0..C-1`` int64 ``(n,)``; refuses what is not a class label (NaN, fractional
    numbers, a class per sample: a regression target) and fewer than ``min_classes`` classes."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InvalidInputError(f"labels must be 1-D (n,), got shape {labels.shape}", field="labels")
    if labels.dtype.kind not in "biufUSO":
        raise InvalidInputError(
            f"labels must be integers or strings, got dtype {labels.dtype}", field="labels"
        )
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            bad = int((~np.isfinite(labels)).sum())
            raise InvalidInputError(
                f"labels contain {bad} NaN or inf values; every sample needs a class", field="labels"
            )
        fractional = labels[labels != np.round(labels)]
        if fractional.size:
            raise InvalidInputError(
                f"labels must be class ids (integers or strings), got fractional numbers such as "
                f"{fractional[0]:g}: a regression target has no classes to score",
                field="labels",
            )
    _, encoded, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if labels.size > min_classes and counts.size == labels.size:
        raise InvalidInputError(
            f"every one of the {labels.size} samples has a class of its own: these are not class labels"
            " (a regression target, or ids); give each sample its class",
            field="labels",
        )
    if counts.size < min_classes:
        raise InvalidInputError(f"need at least {min_classes} classes, got {counts.size}", field="labels")
    if counts.min() < min_per_class:
        raise InvalidInputError(
            f"every class needs at least {min_per_class} samples; the smallest has {counts.min()}",
            field="labels",
        )
    return encoded.astype(np.int64)


def check_matrix(x: np.ndarray, n: int, *, name: str = "features") -> np.ndarray:
    """``x`` as a finite float64 ``(n, d)`` array, or a clear error."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D (n, d), got shape {x.shape}", field=name)
    if x.shape[0] != n:
        raise InvalidInputError(
            f"{name} has {x.shape[0]} rows but labels have {n}; they must match", field=name
        )
    if not np.issubdtype(x.dtype, np.number):
        raise InvalidInputError(f"{name} must be numeric, got dtype {x.dtype}", field=name)
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise InvalidInputError(
            f"{name} contain {bad} non-finite values (NaN or inf); clean them first", field=name
        )
    return x


def check_tap_rows(tap_rows: np.ndarray | None, images: int, labels: int) -> np.ndarray:
    """The label row ``(m,)`` of each of the ``images`` tapped images, or a clear error.

    Without ``tap_rows`` the taps must hold one image per label, in the labels' order. One
    check for every tap-reading score, so that they all give the same message.

    Raises:
        InvalidInputError: field ``taps`` when, without ``tap_rows``, the taps and the labels
            differ in length; field ``tap_rows`` when ``tap_rows`` is not one integer row per
            tapped image or points outside the labels.
    """
    if tap_rows is None:
        if images != labels:
            raise InvalidInputError(
                f"the taps hold {images} images each but there are {labels} labels; give one "
                "label per tapped image (or tap_rows: the label row of each tapped image)",
                field="taps",
            )
        return np.arange(labels)
    rows = np.asarray(tap_rows)
    if rows.shape != (images,) or not np.issubdtype(rows.dtype, np.integer):
        raise InvalidInputError(
            f"the taps hold {images} images each but tap_rows has shape {rows.shape} "
            f"({rows.dtype}); give one integer label row per tapped image, shape ({images},), "
            "or, without tap_rows, one label per tapped image",
            field="tap_rows",
        )
    if images == 0:
        raise InvalidInputError("the taps hold no images", field="taps")
    if rows.min() < 0 or rows.max() >= labels:
        raise InvalidInputError(
            f"tap_rows must be rows of the {labels} labels (0..{labels - 1}), "
            f"got {int(rows.min())}..{int(rows.max())}",
            field="tap_rows",
        )
    return rows.astype(np.int64, copy=False)
