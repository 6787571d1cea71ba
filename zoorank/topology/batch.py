"""Betti numbers of many volumes at many thresholds, optionally in threads.

The fast path (:mod:`zoorank.topology.fast`) spends most of its time in connected-component
labelling with cc3d, which holds the GIL: one thread is 1.1-1.3x faster than two on this
2-core machine (``benchmarks/results/betti_topology.md`` and ``betti_score_speed*.md``; with
scipy's labelling, which releases the GIL, two threads had gained only 1.17x, and cc3d on one
thread is 4x faster than that), so the default is one thread (``workers=1``). Parallelism
across cores comes from worker processes (`zoorank worker --concurrency N`: one model per process).

When only the *sum* of the Betti numbers over a group of same-shape volumes is needed (Betti
decay averages them per class), :func:`stacked_betti_sum` stacks the group's threshold masks
along axis 0 with one empty plane between volumes and labels them in one call: the complex of
the stack is the disjoint union of the volumes' complexes, so every count (components, voids,
Euler characteristic, deaths at a tie) is the sum over volumes, and the per-call overhead of
small maps (deep taps are a few thousand voxels) is paid once per group.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.topology.cubical import RULES, Rule
from zoorank.topology.fast import _betti_numbers, _deaths_at_threshold, _threshold_masks, mask_betti


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def betti_numbers_batch(
    volumes: np.ndarray | Sequence[np.ndarray],
    thresholds: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
    *,
    rule: Rule = "closed",
    workers: int = 1,
) -> np.ndarray:
    """``(β0, β1, β2)`` of each volume at each of its thresholds.

    Args:
        volumes: ``m`` volumes ``(x, y, z)``: a ``(m, x, y, z)`` array or a sequence (shapes
            may differ). Values must be finite (checked).
        thresholds: ``(t,)`` thresholds shared by all volumes, or ``(m, t)`` one row per volume.
        rule: ``"closed"`` (authors', ``b ≤ η ≤ d``) or ``"half_open"`` (``{a ≤ η}``).
        workers: threads (default 1, the fastest measured); 0 means one per usable core.

    Returns:
        ``(m, t, 3)`` int64.

    Raises:
        InvalidInputError: a volume that is not 3-D or holds NaN/inf; thresholds of the wrong
            shape; an unknown rule.
    """
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {RULES}, got {rule!r}", field="params")
    vols = [np.asarray(v) for v in volumes]
    etas = np.asarray(thresholds, dtype=np.float64)
    if etas.ndim == 1:
        etas = np.broadcast_to(etas, (len(vols), etas.size))
    if etas.ndim != 2 or etas.shape[0] != len(vols):
        raise InvalidInputError(
            f"thresholds must be (t,) or ({len(vols)}, t), got shape {etas.shape}",
            field="thresholds",
        )
    for i, vol in enumerate(vols):
        if vol.ndim != 3:
            raise InvalidInputError(f"volume {i} must be 3-D, got shape {vol.shape}", field="volumes")
        if vol.dtype not in (np.float32, np.float64):
            vols[i] = vol.astype(np.float64)
        if not np.isfinite(vols[i]).all():
            raise InvalidInputError(f"volume {i} holds NaN or inf values", field="volumes")
    out = np.zeros((len(vols), etas.shape[1], 3), dtype=np.int64)

    def one(i: int) -> None:
        for j, eta in enumerate(etas[i]):
            out[i, j] = _betti_numbers(vols[i], float(eta), rule)

    n_workers = workers or usable_cores()
    if n_workers == 1 or len(vols) <= 1:
        for i in range(len(vols)):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(one, range(len(vols))))
    return out


def stacked_betti_sum(
    volumes: np.ndarray, thresholds: np.ndarray | Sequence[float], *, rule: Rule = "closed"
) -> np.ndarray:
    """``Σ_i (β0, β1, β2)(volume_i, η)`` for each threshold, from one labelling of the stack.

    Args:
        volumes: ``(k, x, y, z)`` finite float volumes of one shape (not checked here).
        thresholds: ``(t,)``.

    Returns:
        ``(t, 3)`` int64, the sums over the k volumes.
    """
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {RULES}, got {rule!r}", field="params")
    vols = np.asarray(volumes)
    if vols.ndim != 4:
        raise InvalidInputError(f"volumes must be (k, x, y, z), got {vols.shape}", field="volumes")
    # Homology does not see the order of the axes; scipy's labelling walks lines along the
    # last axis, so the longest axis goes last (a (512, 2, 2) map labels ~5x faster as (2, 2, 512)).
    order = 1 + np.argsort(vols.shape[1:], kind="stable")
    vols = vols.transpose(0, *order)
    out = np.zeros((len(np.atleast_1d(thresholds)), 3), dtype=np.int64)
    for j, eta in enumerate(np.atleast_1d(np.asarray(thresholds, dtype=np.float64))):
        le, eq = _threshold_masks(vols, float(eta))
        stacked_le = _stack(le)
        out[j] = mask_betti(stacked_le)
        if rule == "closed" and eq is not None:
            out[j] += _deaths_at_threshold(stacked_le, _stack(eq))
    return out


def _stack(masks: np.ndarray) -> np.ndarray:
    """``(k, x, y, z)`` -> ``(k·(x+1), y, z)``, an empty plane after each volume."""
    k, x, y, z = masks.shape
    stacked = np.zeros((k, x + 1, y, z), dtype=bool)
    stacked[:, :x] = masks
    return stacked.reshape(k * (x + 1), y, z)


def stacked_betti_sums(
    groups: Sequence[tuple[np.ndarray, np.ndarray]], *, rule: Rule = "closed", workers: int = 1
) -> list[np.ndarray]:
    """:func:`stacked_betti_sum` of each ``(volumes (k, x, y, z), thresholds (t,))`` group, in
    ``workers`` threads (0: one per usable core). Returns one ``(t, 3)`` per group.
    """

    def one(group: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return stacked_betti_sum(group[0], group[1], rule=rule)

    n_workers = workers or usable_cores()
    if n_workers == 1 or len(groups) <= 1:
        return [one(group) for group in groups]
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(pool.map(one, groups))
