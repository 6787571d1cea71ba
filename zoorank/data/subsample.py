"""Stratified, seeded subsampling. The chosen sample ids are stored with every result."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoorank.errors import InvalidInputError


def stratified_subsample(labels_n: np.ndarray, per_class: int, *, seed: int) -> np.ndarray:
    """Sorted row indices: ``min(per_class, class size)`` rows of each class, chosen by ``seed``.

    ``per_class <= 0`` keeps every row.
    """
    labels_n = np.asarray(labels_n)
    if per_class <= 0:
        return np.arange(labels_n.shape[0])
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels_n):
        rows = np.flatnonzero(labels_n == cls)
        take = min(per_class, rows.size)
        chosen.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def class_balanced_rows(labels_n: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` rows of each class (deterministic given the row order)."""
    labels_n = np.asarray(labels_n)
    rows = [np.flatnonzero(labels_n == cls)[:per_class] for cls in np.unique(labels_n)]
    return np.sort(np.concatenate(rows))


def check_class_counts(
    labels_n: np.ndarray,
    *,
    min_classes: int = 2,
    min_per_class: int = 5,
    class_names: Sequence[str] | None = None,
) -> None:
    """Refuse data a ranking cannot be computed on, before any work is queued. ``class_names``
    (label -> name, e.g. the folder names) lets the message name the classes, not numbers."""
    classes, counts = np.unique(np.asarray(labels_n), return_counts=True)
    if classes.size < min_classes:
        raise InvalidInputError(
            f"the dataset has {classes.size} class(es); ranking needs at least {min_classes}",
            field="dataset",
        )
    if counts.min() < min_per_class:
        small = [
            f"{class_names[int(c)]!r} ({k})" if class_names is not None else f"{c} ({k})"
            for c, k in zip(classes, counts, strict=True)
            if k < min_per_class
        ]
        raise InvalidInputError(
            f"classes {', '.join(small[:10])} have fewer than {min_per_class} samples "
            f"(smallest: {counts.min()}); add samples or drop those classes",
            field="dataset",
        )
