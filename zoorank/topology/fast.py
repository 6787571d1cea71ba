"""Betti numbers of a sublevel set at one threshold without persistence (the fast path).

Same filtration as :mod:`zoorank.topology.cubical` (V-construction: voxels are vertices, a
cell enters at the largest value of its vertices, arXiv 2311.04592 / CubicalRipser), but at a
single threshold η only the complex ``K = K_η = {a ≤ η}`` is needed:

* ``β0(K)`` = number of 6-connected components of the voxel set (two voxels share an edge of
  the complex exactly when they are axis neighbours).
* ``β2(K)`` = number of bounded components of the complement ``R³ ∖ |K|`` (Alexander duality).
  In the V-construction a missing voxel leaves every square / cube it is a corner of out of
  ``K``, so complement voxels connect across faces, edges and corners: 26-connectivity. A
  complement component is unbounded exactly when it reaches the array's border.
* ``β1(K) = β0 + β2 − χ(K)`` with the Euler characteristic ``χ = V − E + F − C`` counted
  directly: ``V`` voxels in the set, ``E`` axis-neighbour pairs both in, ``F`` unit squares
  with 4 corners in, ``C`` unit cubes with 8 corners in (boolean ANDs of shifted slices).

Threshold rules (see :mod:`zoorank.topology.cubical`): the homology above is the
``"half_open"`` count ``#{b ≤ η < d}``. The authors count a persistence interval alive when
``b ≤ η ≤ d`` (``"closed"``). Derivation of the closed count with the fast path, for one
homology degree k, writing ``K_< = {a < η}``, ``K_≤ = {a ≤ η}``, ``i: H_k(K_<) → H_k(K_≤)``:

1. Every birth and death is the value of some voxel (a cell enters at the value of one of its
   vertices). So if no voxel equals η, no interval ends at η and closed = half_open =
   ``β_k(K_≤)``.
2. Otherwise ``closed − half_open = #{b ≤ η, d = η} = #{b < η, d = η}`` (zero-length
   intervals are not counted). The intervals alive in ``K_<`` are those with ``b < η ≤ d``; of
   these, the ones still alive in ``K_≤`` have ``d > η``. By the structure theorem of
   persistence, ``#{b < η, d = η} = dim ker i = β_k(K_<) − rank i``. Hence
   ``closed_k(η) = β_k(K_≤) + β_k(K_<) − rank i_k``: the classes alive just below η *or* at η.
   Neither one sublevel set gives it: the limit from below ``β(K_<)`` misses classes born at
   η, the value at η ``β(K_≤)`` (= the limit from above) misses classes that die at η.
3. ``rank i_0`` = number of components of ``K_≤`` containing a voxel of ``K_<``.
   ``rank i_2`` = number of voids of ``K_<`` (bounded complement components) that still
   contain a void of ``K_≤``: a void's boundary 2-cycle maps to the sum of the ``K_≤``-voids
   inside it, and those sums are independent. Both come from connected-component labels.
4. ``dim ker i_1`` is 0 when ``β1(K_<) = 0`` (always the case at η = 0 on a ReLU map, where
   ``K_<`` is empty: no interval can die at 0 there, since ``d = 0`` needs ``b < 0``, so the two
   rules agree at η = 0 on ReLU maps however many voxels are exactly 0). Otherwise the long
   exact sequence of the pair, with ``H_3(K_≤) = 0``,
   gives ``dim H_2(K_≤, K_<) = dim coker i_2 + dim ker i_1``, and the relative group is local:
   ``K_≤ = K_< ∪ N`` with ``N`` the closed cells touching a voxel equal to η, so by excision
   ``H(K_≤, K_<) ≅ ⊕_j H(N_j, N_j ∩ K_<)`` over clusters ``N_j`` of tie voxels (tie voxels
   within 3 voxels of each other share a cluster, so two clusters' cells share no vertex).
   Each summand is read from a persistence
   computation on the cluster's bounding box (±1 voxel) of a 3-level function: 0 on ``K_<``,
   1 on the cluster's tie voxels, 2 elsewhere. Ties are rare on float activations, so this
   costs nothing on average.

Shapes: every function takes one volume ``(x, y, z)``; a 2-D ``(h, w)`` image is promoted to
``(1, h, w)``. Results are int64 ``(3,)`` = ``(β0, β1, β2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cc3d
import numpy as np
from scipy import ndimage

from zoorank.errors import InvalidInputError
from zoorank.topology.cubical import RULES, Rule, as_volume

_FULL = ndimage.generate_binary_structure(3, 3)  # 26-connectivity (tie clusters)


def euler_characteristic(mask: np.ndarray) -> int:
    """``χ = V − E + F − C`` of the V-construction complex of a boolean voxel set ``(x, y, z)``.

    Example:
        >>> euler_characteristic(np.ones((3, 3, 3), bool))  # a solid cube is contractible
        1
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise InvalidInputError(f"mask must be 3-D, got shape {m.shape}", field="mask")
    count = np.count_nonzero
    ex = m[1:] & m[:-1]  # edges along axis 0
    ey = m[:, 1:] & m[:, :-1]
    ez = m[:, :, 1:] & m[:, :, :-1]
    fxy = ex[:, 1:] & ex[:, :-1]  # squares spanned by axes 0 and 1
    fxz = ex[:, :, 1:] & ex[:, :, :-1]
    fyz = ey[:, :, 1:] & ey[:, :, :-1]
    cubes = fxy[:, :, 1:] & fxy[:, :, :-1]
    edges = count(ex) + count(ey) + count(ez)
    faces = count(fxy) + count(fxz) + count(fyz)
    return int(count(m) - edges + faces - count(cubes))


def _components(mask: np.ndarray, connectivity: Literal[6, 26]) -> tuple[np.ndarray, int]:
    """Labels ``1..n`` of the ``connectivity``-connected components (6 or 26) of a voxel set.

    ``cc3d`` (connected-components-3d) rather than ``scipy.ndimage.label``: measured 2.4x
    faster with 6-connectivity and 4.2x with 26 on stacked threshold masks, and labelling is
    most of the fast path's time.
    """
    labels, n = cc3d.connected_components(mask, connectivity=connectivity, return_N=True)
    return labels, int(n)


def _void_count(mask: np.ndarray) -> int:
    """``β2`` = number of 26-connected components of ``~mask`` that do not reach the border:
    the complement padded by one voxel (so that everything outside is one component) has
    ``β2 + 1`` components."""
    return _components(np.pad(~mask, 1, constant_values=True), 26)[1] - 1


def mask_betti(mask: np.ndarray) -> np.ndarray:
    """``(β0, β1, β2)`` of the V-construction complex of a boolean voxel set ``(x, y, z)``.

    Example:
        >>> shell = np.ones((5, 5, 5), bool); shell[2, 2, 2] = False  # a hollow cube
        >>> mask_betti(shell).tolist()
        [1, 0, 1]
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise InvalidInputError(f"mask must be 3-D, got shape {m.shape}", field="mask")
    if not m.any():
        return np.zeros(3, dtype=np.int64)
    b0 = _components(m, 6)[1]
    b2 = _void_count(m)
    b1 = b0 + b2 - euler_characteristic(m)
    return np.array([b0, b1, b2], dtype=np.int64)


def _threshold_masks(volume: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``{a ≤ η}`` and ``{a = η}`` (None when empty), compared as float64 like gudhi/cripser.

    A float32 volume is compared against the float32 neighbours of η so that the answer is
    the one of the float64 comparison, without converting the volume.
    """
    eta = float(threshold)
    if volume.dtype == np.float32:
        eta32 = np.float32(eta)
        if float(eta32) == eta:
            le = volume <= eta32
            eq = volume == eta32
        else:
            below = eta32 if float(eta32) < eta else np.nextafter(eta32, np.float32(-np.inf))
            return volume <= below, None  # no float32 value equals η
    else:
        le = volume <= eta
        eq = volume == eta
    return le, (eq if eq.any() else None)


def sublevel_betti(volume: np.ndarray, threshold: float) -> np.ndarray:
    """Homology of ``{a ≤ η}``: ``(β0, β1, β2)`` = ``#{b ≤ η < d}`` per degree ("half_open").

    Equals gudhi's ``CubicalComplex(vertices=a).persistent_betti_numbers(η, η)``.

    Raises:
        InvalidInputError: see :func:`zoorank.topology.cubical.as_volume`.
    """
    vol = as_volume(volume, name="volume")
    le, _ = _threshold_masks(vol, threshold)
    return mask_betti(le)


def betti_numbers(volume: np.ndarray, threshold: float, *, rule: Rule = "closed") -> np.ndarray:
    """``(β0, β1, β2)`` of a volume at threshold η under ``rule`` (default: the authors').

    ``closed``: ``#{(b, d) : b ≤ η ≤ d}`` per degree (arXiv 2311.04592's released code);
    ``half_open``: ``#{b ≤ η < d}``, the homology of ``{a ≤ η}``.

    Args:
        volume: ``(x, y, z)`` finite values (a 2-D image is promoted to ``(1, h, w)``).
        threshold: η.

    Raises:
        InvalidInputError: see :func:`zoorank.topology.cubical.as_volume`; unknown ``rule``.

    Example:
        >>> ring = np.ones((1, 3, 3)); ring[0, 1, 1] = 2.0  # a loop of 1s around a 2
        >>> betti_numbers(ring, 2.0).tolist()  # the loop dies at 2.0: alive under b <= η <= d
        [1, 1, 0]
        >>> betti_numbers(ring, 2.0, rule="half_open").tolist()  # {a <= 2} is a filled square
        [1, 0, 0]
    """
    vol = as_volume(volume, name="volume")
    return _betti_numbers(vol, float(threshold), rule)


def _betti_numbers(vol: np.ndarray, eta: float, rule: Rule) -> np.ndarray:
    if rule not in RULES:
        raise InvalidInputError(f"rule must be one of {RULES}, got {rule!r}", field="params")
    le, eq = _threshold_masks(vol, eta)
    homology = mask_betti(le)
    if rule == "half_open" or eq is None:
        return homology
    return homology + _deaths_at_threshold(le, eq)


def betti_curve(
    volume: np.ndarray, thresholds: Sequence[float] | np.ndarray, *, rule: Rule = "closed"
) -> np.ndarray:
    """``(t, 3)`` Betti numbers of one volume at each of ``t`` thresholds.

    One fast-path evaluation per threshold (see :func:`betti_numbers`).
    """
    vol = as_volume(volume, name="volume")
    etas = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    return np.stack([_betti_numbers(vol, float(eta), rule) for eta in etas]).reshape(-1, 3)


def _deaths_at_threshold(le: np.ndarray, eq: np.ndarray) -> np.ndarray:
    """Per degree, the number of intervals with ``b < η = d``: ``dim ker(H(K_<) → H(K_≤))``."""
    lt = le & ~eq
    if not lt.any():
        return np.zeros(3, dtype=np.int64)
    # Degree 0: components of K_< minus the components of K_≤ that contain some of them.
    labels_le, _ = _components(le, 6)
    u0 = _components(lt, 6)[1]
    r0 = np.unique(labels_le[lt]).size
    # Degree 2: voids of K_< minus those that still contain a void of K_≤.
    pad_lt = np.pad(~lt, 1, constant_values=True)
    pad_le = np.pad(~le, 1, constant_values=True)
    void_lt, n_lt = _components(pad_lt, 26)
    void_le, n_le = _components(pad_le, 26)
    outside_lt, outside_le = void_lt[0, 0, 0], void_le[0, 0, 0]
    u2, v2 = n_lt - 1, n_le - 1
    inner_le = pad_le & (void_le != outside_le)
    hit = np.unique(void_lt[inner_le])
    r2 = int(np.count_nonzero(hit != outside_lt))
    # Degree 1: zero unless K_< has loops; then from the local relative group H_2(K_≤, K_<).
    u1 = u0 + u2 - euler_characteristic(lt)
    dead1 = 0
    if u1 > 0:
        dead1 = _relative_h2(lt, eq) - (v2 - r2)
        if not 0 <= dead1 <= u1:  # pragma: no cover - would mean the derivation is wrong
            raise AssertionError(f"tie correction out of range: {dead1} not in [0, {u1}]")
    return np.array([u0 - r0, dead1, u2 - r2], dtype=np.int64)


def _relative_h2(lt: np.ndarray, eq: np.ndarray) -> int:
    """``dim H_2(K_≤, K_<)`` as a sum over clusters of tie voxels, by excision (see module doc)."""
    import gudhi

    clusters, _ = ndimage.label(ndimage.binary_dilation(eq, structure=_FULL), structure=_FULL)
    total = 0
    for j, box in enumerate(ndimage.find_objects(clusters), start=1):
        mine = eq[box] & (clusters[box] == j)
        level = np.full(mine.shape, 2.0)
        level[lt[box] | (eq[box] & ~mine)] = 0.0  # other clusters' ties lie in no cell of N_j
        level[mine] = 1.0
        complex_ = gudhi.CubicalComplex(vertices=level)
        complex_.compute_persistence(homology_coeff_field=2, min_persistence=0.0)
        one = np.asarray(complex_.persistence_intervals_in_dimension(1)).reshape(-1, 2)
        two = np.asarray(complex_.persistence_intervals_in_dimension(2)).reshape(-1, 2)
        total += int(np.count_nonzero((one[:, 0] == 0.0) & (one[:, 1] == 1.0)))
        total += int(np.count_nonzero((two[:, 0] == 1.0) & (two[:, 1] > 1.0)))
    return total
