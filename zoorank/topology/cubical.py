"""Sublevel-set cubical persistence of a 3-D array with values on the vertices (reference path).

Suresh, Das, Abrol, Dutta Roy, "On Characterizing the Evolution of Embedding Space of Neural
Networks using Algebraic Topology", arXiv 2311.04592 (Pattern Recognition Letters 2024): each
feature map ``(c, h, w)`` is read as a 3-D grey-scale volume and filtered by sublevel sets
``K_η = {a ≤ η}`` in the *V-construction*: the voxels are the vertices of a cubical complex, an
edge, square or cube enters at the largest value of its vertices. gudhi's
``CubicalComplex(vertices=...)`` and CubicalRipser's ``computePH`` (the authors' tool) build
the same filtration.

Betti numbers at a threshold η are counted from the persistence intervals ``(b, d)`` of
dimension k (zero-length intervals dropped, essential classes with ``d = +inf``) by one of two
rules:

* ``"closed"`` -- the authors' count (their ``betti(persistence_diag, threshold)``):
  ``β_k(η) = #{(b, d) : b ≤ η ≤ d}``.
* ``"half_open"`` -- the homology of the sublevel set ``{a ≤ η}`` (gudhi's
  ``persistent_betti_numbers(η, η)``): ``β_k(η) = #{(b, d) : b ≤ η < d}``.

They differ by the intervals with ``d = η`` exactly; see :mod:`zoorank.topology.fast` for the
derivation used by the fast path. This module is the slow, obviously-correct reference: it is
what the fast path is tested against, and what :func:`betti_curve_from_intervals` uses when a
whole diagram is wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from zoorank.errors import InvalidInputError

Rule = Literal["closed", "half_open"]
RULES: tuple[Rule, ...] = ("closed", "half_open")


def as_volume(array: np.ndarray, *, name: str = "array") -> np.ndarray:
    """``array`` as a finite 3-D float volume; a 2-D image becomes a 1-thick volume ``(1, h, w)``.

    Homology does not change when a 2-D complex is seen as a 1-thick 3-D one, so a 2-D
    ``(h, w)`` input is accepted and promoted. float32 and float64 are kept; any other numeric
    dtype becomes float64.

    Raises:
        InvalidInputError: fewer than 2 or more than 3 dimensions, an empty array, a
            non-numeric dtype, or NaN/inf values.
    """
    volume = np.asarray(array)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise InvalidInputError(
            f"{name} must be a 3-D (c, h, w) volume or a 2-D (h, w) image, got shape {volume.shape}",
            field=name,
        )
    if volume.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {volume.shape})", field=name)
    if not np.issubdtype(volume.dtype, np.number) or np.issubdtype(volume.dtype, np.complexfloating):
        raise InvalidInputError(f"{name} must be real-valued, got dtype {volume.dtype}", field=name)
    if volume.dtype not in (np.float32, np.float64):
        volume = volume.astype(np.float64)
    if not np.isfinite(volume).all():
        bad = int((~np.isfinite(volume)).sum())
        raise InvalidInputError(
            f"{name} contains {bad} non-finite values (NaN or inf); Betti numbers need finite values",
            field=name,
        )
    return volume


def persistence_intervals(volume: np.ndarray, *, max_dimension: int = 2) -> list[np.ndarray]:
    """Persistence intervals of the sublevel V-construction filtration, computed with gudhi.

    Args:
        volume: ``(x, y, z)`` finite values on the vertices (a 2-D image is promoted).
        max_dimension: highest homology dimension returned (at most 2 for a 3-D volume).

    Returns:
        ``[I_0, ..., I_max_dimension]``, each ``(n_k, 2)`` float64 ``(birth, death)`` sorted
        by birth, ``death = inf`` for essential classes; intervals of length zero dropped
        (neither gudhi's default nor CubicalRipser report them).

    Raises:
        InvalidInputError: see :func:`as_volume`.

    Example:
        >>> persistence_intervals(np.zeros((2, 2, 2)))[0].tolist()
        [[0.0, inf]]
    """
    import gudhi  # local import: gudhi is only needed on this reference path

    vol = as_volume(volume, name="volume").astype(np.float64, copy=False)
    complex_ = gudhi.CubicalComplex(vertices=vol)
    complex_.compute_persistence(homology_coeff_field=2, min_persistence=0.0)
    out = []
    for k in range(max_dimension + 1):
        pairs = np.asarray(complex_.persistence_intervals_in_dimension(k), dtype=np.float64)
        pairs = pairs.reshape(-1, 2)
        out.append(pairs[np.argsort(pairs[:, 0], kind="stable")])
    return out


def betti_curve_from_intervals(
    intervals: Sequence[np.ndarray],
    thresholds: np.ndarray | Sequence[float],
    *,
    rule: Rule = "closed",
) -> np.ndarray:
    """Betti numbers at every threshold, counted from persistence intervals.

    ``closed``: ``β_k(η) = #{b ≤ η} − #{d < η}`` (= ``#{b ≤ η ≤ d}`` because ``b < d``);
    ``half_open``: ``β_k(η) = #{b ≤ η} − #{d ≤ η}`` (= ``#{b ≤ η < d}``).

    Args:
        intervals: ``[I_0, I_1, ...]``, each ``(n_k, 2)`` (birth, death).
        thresholds: ``(t,)`` values of η.

    Returns:
        ``(t, len(intervals))`` int64.
    """
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {RULES}, got {rule!r}", field="params")
    etas = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    side: Literal["left", "right"] = "left" if rule == "closed" else "right"
    curve = np.zeros((etas.size, len(intervals)), dtype=np.int64)
    for k, pairs in enumerate(intervals):
        pairs = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
        births = np.sort(pairs[:, 0])
        deaths = np.sort(pairs[:, 1])
        born = np.searchsorted(births, etas, side="right")  # #{b ≤ η}
        dead = np.searchsorted(deaths, etas, side=side)  # #{d < η} or #{d ≤ η}
        curve[:, k] = born - dead
    return curve


def betti_from_intervals(
    intervals: Sequence[np.ndarray], threshold: float, *, rule: Rule = "closed"
) -> np.ndarray:
    """Betti numbers ``(len(intervals),)`` at one threshold; see :func:`betti_curve_from_intervals`.

    Example:
        >>> ring = [np.array([[0.0, np.inf]]), np.array([[0.0, 1.0]])]
        >>> betti_from_intervals(ring, 1.0).tolist()
        [1, 1]
        >>> betti_from_intervals(ring, 1.0, rule="half_open").tolist()
        [1, 0]
    """
    return betti_curve_from_intervals(intervals, [threshold], rule=rule)[0]
