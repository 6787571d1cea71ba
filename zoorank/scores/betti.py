"""Betti decay: how fast the topology of the feature maps simplifies with depth.

Suresh, Das, Abrol, Dutta Roy. "On Characterizing the Evolution of Embedding Space of Neural
Networks using Algebraic Topology", arXiv 2311.04592 (Pattern Recognition Letters 2024), as
their released code computes it (docs/design.md §5.1):

1. Taps ``l = 1..L`` in network order (:mod:`zoorank.features.taps`); per image and tap the
   feature map ``(c, h, w)`` of raw activations is a 3-D volume.
2. Sublevel V-construction cubical persistence; Betti numbers at η counted as the authors do,
   an interval alive when ``b ≤ η ≤ d`` (:mod:`zoorank.topology.fast` computes this exactly
   without persistence).
3. ``Ω_l`` = class-balanced mean over images of ``β0 + β1 + β2`` (mean of per-class means).
4. ``y = Ω / ||Ω||₂`` against ``x_l = l``; ``Ridge(alpha=1e-3)`` on ``PolynomialFeatures(3)``
   of x gives ``y ≈ c0 + c1 x + c2 x² + c3 x³``; **θ = c1 + ½ c2 + ½ c3**, lower is better
   (the Betti numbers fall faster with depth).

Registered scores (all ``needs={"taps"}``, direction "lower"):

* ``betti_decay`` -- the paper's recipe: one raw threshold η (default 0.5), ``x = 1..L``, taps
  at the model's own resolution (``input_size="native"``, as the authors ran it).
* ``betti_decay_norm`` -- comparable across architectures: depth ``x = (l−1)/(L−1) ∈ [0, 1]``
  and a per-tap threshold ``η_l`` = the ``quantile``-quantile of tap l's activations (pooled
  over the images used), so neither the activation scale nor the number of taps moves θ.
* ``betti_auc`` -- as ``betti_decay_norm`` but ``Ω_l`` is the mean Betti sum over a grid of
  ``points`` quantile thresholds in ``[low, high]`` (the normalised area under the Betti
  curve, trapezoid rule) instead of one threshold.
* ``betti_slope`` -- the least-squares slope of ``Ω/‖Ω‖`` over depth in [0, 1] at raw η:
  "Betti numbers fall with depth" without the cubic, whose θ ≈ c1 reads only the first taps.
* ``betti_slope_norm`` -- ``betti_slope`` at the per-tap ``quantile`` (default 0.9: the
  topology of each tap's strongest 10% of activations).

Every Betti score takes ``input_size``: ``"job"`` (the job's shared forward pass), ``"native"``
(the model's own resolution) or pixels; the pipeline (:func:`zoorank.rank.tap_input_size`)
runs a second forward pass over the tap images when it differs from the job's. The slopes
default to 64 px: at 32 px the deep taps of the offline models are 1×1 maps.

Shapes: ``inputs.taps`` maps tap name -> ``(m, c, h, w)`` in network order; ``inputs.tap_rows``
``(m,)`` indexes ``inputs.labels``. At most ``images_per_class`` images per class are used
(chosen by a hash of their content, so the choice does not depend on sample order).

Defaults, from ``benchmarks/betti`` and ``benchmarks/results/betti_*`` (2 cores):

* ``images_per_class = 5``: at a fixed input size the ranking hardly moves between 3, 5 and 10
  images per class (Kendall τ 0.93-1.0) while the cost is linear in images.
* ``curve_points``: the Betti curve over the authors' grid η = 0, 0.25, ..., 1.75 costs one
  labelling per grid point (measured on tf_efficientnet_lite0, 50 images, one core: 1.0 s ->
  6.5 s per model at 224 px, 0.10 s -> 0.77 s at 64 px). ``betti_decay`` stores it per tap by
  default (``curve_points=8``; 0 skips it), the variants on request. That makes
  ``betti_decay`` the slowest score of a job (9.4 s per model on average in the demo job), so
  it is ``cost="expensive"``: computed when asked for by name, not in the default set.
* Twin check (pretrained ImageNet model above its random-init twin; a known answer): the
  paper's θ fails it at every resolution, its own included (0-1 of 4 on digits); the cubic's θ
  ≈ c1, the slope at the first tap, and every profile rises over the first taps.
  ``betti_slope`` passes it at 64 px, 128 px and native resolution, ``betti_slope_norm`` at
  128 px and native but not always at 64 px. Treat ``betti_decay`` as a reproduction of the
  paper, not as a ranking signal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import PolynomialFeatures

from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_tap_rows
from zoorank.scores.registry import ScoreSpec, register_score
from zoorank.topology.batch import stacked_betti_sums

PAPER = (
    "Suresh, Das, Abrol, Dutta Roy 2023, On Characterizing the Evolution of Embedding Space "
    "of Neural Networks using Algebraic Topology (arXiv 2311.04592, Pattern Recognition Letters)"
)
RIDGE_ALPHA = 1e-3
POLYNOMIAL_DEGREE = 3
THETA_WEIGHTS = np.array([0.0, 1.0, 0.5, 0.5])  # applied to (c0, c1, c2, c3), as the authors'
AUTHORS_ETA_GRID_STEP = 0.25  # their notebook's Betti curves: η = 0, 0.25, ..., 1.75
MIN_TAPS = POLYNOMIAL_DEGREE + 1
CHUNK_VOXELS = 1 << 18  # voxels per labelling task: small taps stack, big ones split


def betti_decay_rate(omega: np.ndarray, *, depth: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """θ of a Betti-sum profile ``Ω`` over taps; lower = faster decay.

    ``y = Ω/||Ω||₂``; fit ``y ≈ c0 + c1 x + c2 x² + c3 x³`` by ``Ridge(alpha=1e-3)`` on
    ``PolynomialFeatures(3)(x)`` (sklearn: the intercept is not penalised and the constant
    column's coefficient is 0); ``θ = c1 + ½ c2 + ½ c3``.

    Args:
        omega: ``(L,)`` non-negative Betti sums per tap, L ≥ 4, not all zero.
        depth: ``(L,)`` tap positions x; default ``1..L`` (the paper's).

    Returns:
        θ and the coefficients ``(c1, c2, c3)``.

    Raises:
        InvalidInputError: fewer than 4 taps, non-finite or all-zero Ω, depth of another length.

    Example:
        >>> decaying, _ = betti_decay_rate(np.array([8.0, 6.0, 4.0, 2.0]))
        >>> flat, _ = betti_decay_rate(np.ones(4))
        >>> bool(decaying < 0), round(flat, 12)
        (True, 0.0)
    """
    omega = np.asarray(omega, dtype=np.float64).ravel()
    if omega.size < MIN_TAPS:
        raise InvalidInputError(
            f"Betti decay fits a cubic over taps and needs at least {MIN_TAPS} taps, got {omega.size}",
            field="taps",
        )
    if not np.isfinite(omega).all():
        raise InvalidInputError("the Betti profile Ω holds non-finite values", field="taps")
    norm = float(np.linalg.norm(omega))
    if norm == 0.0:
        raise InvalidInputError(
            "every tap has Betti sum 0 at this threshold (the sublevel sets are empty); raise "
            "eta or use betti_decay_norm",
            field="params",
        )
    x = np.arange(1, omega.size + 1, dtype=np.float64) if depth is None else np.asarray(depth)
    x = x.astype(np.float64).ravel()
    if x.shape != omega.shape:
        raise InvalidInputError(f"depth has {x.size} entries for {omega.size} taps", field="taps")
    design = PolynomialFeatures(POLYNOMIAL_DEGREE).fit_transform(x.reshape(-1, 1))  # (L, 4)
    model = Ridge(alpha=RIDGE_ALPHA).fit(design, omega / norm)
    coef = np.asarray(model.coef_, dtype=np.float64)
    return float(coef @ THETA_WEIGHTS), coef[1:]


def betti_decay_slope(omega: np.ndarray, *, depth: np.ndarray) -> float:
    """Least-squares slope of ``y = Ω/||Ω||₂`` over depth scaled to [0, 1]; lower = faster decay.

    The paper's claim in its plainest form: Betti numbers fall with depth in networks that
    transfer well. With ``x`` the depth, ``slope = Σ (x - x̄)(y - ȳ) / Σ (x - x̄)²``. Scaling Ω
    by its norm and depth to [0, 1] makes the value comparable across architectures of any
    activation scale and depth.

    Args:
        omega: ``(L,)`` Betti sums per tap, L ≥ 2, not all zero.
        depth: ``(L,)`` tap positions in [0, 1].

    Example:
        >>> round(betti_decay_slope(np.array([4.0, 3, 2, 1]), depth=np.linspace(0, 1, 4)), 6)
        -0.547723
    """
    omega = np.asarray(omega, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(omega))
    if omega.size < 2 or norm == 0.0 or not np.isfinite(omega).all():
        raise InvalidInputError("the Betti profile needs >= 2 finite taps, not all zero", field="taps")
    x = np.asarray(depth, dtype=np.float64).ravel()
    y = omega / norm
    centred = x - x.mean()
    return float(centred @ (y - y.mean()) / (centred @ centred))


@dataclass(frozen=True)
class TapData:
    """The validated taps a Betti score works on."""

    names: list[str]
    maps: list[np.ndarray]  # each (k, c, h, w), only the selected images
    labels: np.ndarray  # (k,) 0..C-1
    positions: np.ndarray  # (k,) positions into the original tap arrays
    depth_index: np.ndarray  # (L,) 0-based positions of the kept taps among all taps
    total_taps: int


def prepare_taps(inputs: ScoreInputs, *, images_per_class: int, max_taps: int) -> TapData:
    """Validate ``inputs.taps``/``tap_rows``, keep ≤ ``images_per_class`` images per class and
    ≤ ``max_taps`` taps (evenly spaced, first and last kept; 0 = all).

    Raises:
        InvalidInputError: fewer than 4 taps, a tap that is not ``(m, c, h, w)``, taps of
            different m, NaN/inf in a tap, tap rows out of range, fewer than 2 classes among
            the tapped images, bad ``images_per_class``/``max_taps``.
    """
    if images_per_class < 1:
        raise InvalidInputError("images_per_class must be at least 1", field="params")
    if max_taps != 0 and max_taps < MIN_TAPS:
        raise InvalidInputError(
            f"max_taps must be 0 (all taps) or at least {MIN_TAPS}, got {max_taps}",
            field="params",
        )
    assert inputs.taps is not None
    names = list(inputs.taps)
    if len(names) < MIN_TAPS:
        raise InvalidInputError(
            f"Betti decay needs at least {MIN_TAPS} layer taps to fit a cubic over depth, got {len(names)}",
            field="taps",
        )
    arrays = [np.asarray(inputs.taps[name]) for name in names]
    for name, array in zip(names, arrays, strict=True):
        if array.ndim != 4:
            raise InvalidInputError(
                f"tap {name!r} has shape {array.shape}; Betti decay needs feature maps "
                "(m, c, h, w), not vectors",
                field="taps",
            )
    m = arrays[0].shape[0]
    if any(a.shape[0] != m for a in arrays):
        sizes = {name: a.shape[0] for name, a in zip(names, arrays, strict=True)}
        raise InvalidInputError(f"taps hold different numbers of images: {sizes}", field="taps")
    labels = np.asarray(inputs.labels)
    rows = check_tap_rows(inputs.tap_rows, m, labels.shape[0])
    for name, array in zip(names, arrays, strict=True):
        # every row, not only the images chosen below: a NaN anywhere is a malformed input
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise InvalidInputError(f"tap {name!r} holds {bad} non-finite values (NaN or inf)", field="taps")
    tap_labels = check_labels(labels[rows])
    positions = _select_images(arrays[0], tap_labels, images_per_class)
    kept = np.arange(len(names))
    if max_taps and max_taps < len(names):
        kept = np.unique(np.round(np.linspace(0, len(names) - 1, max_taps)).astype(int))
    maps: list[np.ndarray] = []
    for index in kept:
        chosen = arrays[index][positions]
        if chosen.dtype not in (np.float32, np.float64):
            chosen = chosen.astype(np.float64)
        maps.append(chosen)
    return TapData(
        names=[names[i] for i in kept],
        maps=maps,
        labels=check_labels(tap_labels[positions]),
        positions=positions,
        depth_index=kept,
        total_taps=len(names),
    )


def _select_images(first_tap: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """≤ ``per_class`` positions per class, ordered by a hash of the image's first tap."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size > per_class:
            digests = [
                hashlib.blake2b(np.ascontiguousarray(first_tap[i]).tobytes(), digest_size=8).digest()
                for i in members
            ]
            order = sorted(range(members.size), key=lambda j: (digests[j], j))
            members = np.sort(members[order[:per_class]])
        chosen.append(members)
    return np.sort(np.concatenate(chosen))


def class_balanced_betti(
    taps: TapData, thresholds: Sequence[np.ndarray], *, workers: int = 1
) -> list[np.ndarray]:
    """Per tap, the mean over classes of the per-class mean ``(β0, β1, β2)`` at each threshold.

    ``Ω_l(η) = (1/C) Σ_c (1/n_c) Σ_{i ∈ c} β(image i, tap l, η)``. Classes with the same
    count ``n`` share the weight ``1/(C·n)``, so their images are summed together by
    :func:`zoorank.topology.batch.stacked_betti_sum` (one labelling per chunk of
    ≤ :data:`CHUNK_VOXELS` voxels; ``workers`` threads, see :mod:`zoorank.topology.batch`).

    Args:
        thresholds: per tap, ``(t,)`` thresholds.

    Returns:
        per tap, ``(t, 3)`` float64.
    """
    counts = np.bincount(taps.labels)
    n_classes = counts.size
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    owners: list[tuple[int, float]] = []
    for tap, (maps, eta) in enumerate(zip(taps.maps, thresholds, strict=True)):
        per_chunk = max(1, CHUNK_VOXELS // int(np.prod(maps.shape[1:])))
        for size in np.unique(counts):
            members = np.flatnonzero(counts[taps.labels] == size)
            for start in range(0, members.size, per_chunk):
                groups.append((maps[members[start : start + per_chunk]], np.asarray(eta)))
                owners.append((tap, 1.0 / (n_classes * float(size))))
    sums = stacked_betti_sums(groups, rule="closed", workers=workers)
    out = [np.zeros((np.asarray(eta).size, 3)) for eta in thresholds]
    for (tap, weight), total in zip(owners, sums, strict=True):
        out[tap] += weight * total
    return out


def tap_quantiles(maps: np.ndarray, quantiles: np.ndarray, *, max_values: int = 1 << 20) -> np.ndarray:
    """Quantiles of a tap's activations pooled over images; a strided subsample above
    ``max_values`` values keeps this cheap (``(k, c, h, w)`` -> ``(q,)``)."""
    flat = maps.ravel()
    if flat.size > max_values:
        flat = flat[:: -(-flat.size // max_values)]
    return np.quantile(flat, quantiles)


def _theta_output(
    taps: TapData,
    omega: np.ndarray,
    depth: np.ndarray,
    per_degree: np.ndarray,
    thresholds: list[np.ndarray],
    curves: list[np.ndarray] | None,
    extra: dict[str, object],
) -> ScoreOutput:
    theta, coef = betti_decay_rate(omega, depth=depth)
    norm = float(np.linalg.norm(omega))
    tap_details = []
    for i, name in enumerate(taps.names):
        entry: dict[str, object] = {
            "name": name,
            "depth": float(depth[i]),
            "omega": float(omega[i]),
            "y": float(omega[i] / norm),
            "betti_mean": [float(v) for v in per_degree[i]],
            "thresholds": [float(v) for v in thresholds[i]],
        }
        if curves is not None:
            entry["curve"] = [float(v) for v in curves[i]]
        tap_details.append(entry)
    details: dict[str, object] = {
        "theta": theta,
        "omega": [float(v) for v in omega],
        "coefficients": [float(c) for c in coef],
        "taps": tap_details,
        "taps_used": len(taps.names),
        "taps_total": taps.total_taps,
        "images_used": int(taps.labels.size),
        "classes": int(taps.labels.max()) + 1,
        "rule": "closed: b <= eta <= d",
        **extra,
    }
    return ScoreOutput(value=theta, details=details)


def _decay(
    inputs: ScoreInputs,
    *,
    eta: float,
    images_per_class: int,
    max_taps: int,
    curve_points: int,
    input_size: str,
) -> ScoreOutput:
    taps = prepare_taps(inputs, images_per_class=images_per_class, max_taps=max_taps)
    grid = AUTHORS_ETA_GRID_STEP * np.arange(max(curve_points, 0))
    thresholds = [np.array([eta]) for _ in taps.names]
    betti = class_balanced_betti(taps, [np.concatenate([[eta], grid]) for _ in taps.names])
    per_degree = np.stack([b[0] for b in betti])
    omega = per_degree.sum(axis=1)
    curves = [b[1:].sum(axis=1) for b in betti] if curve_points > 0 else None
    depth = taps.depth_index + 1.0
    extra: dict[str, object] = {"eta": eta}
    if curves is not None:
        extra["curve_thresholds"] = [float(v) for v in grid]
    return _theta_output(taps, omega, depth, per_degree, thresholds, curves, extra)


def _slope(
    inputs: ScoreInputs, *, eta: float, images_per_class: int, max_taps: int, input_size: str
) -> ScoreOutput:
    taps = prepare_taps(inputs, images_per_class=images_per_class, max_taps=max_taps)
    return _slope_output(taps, [np.array([eta]) for _ in taps.names], {"eta": eta})


def _slope_norm(
    inputs: ScoreInputs, *, quantile: float, images_per_class: int, max_taps: int, input_size: str
) -> ScoreOutput:
    if not 0.0 <= quantile <= 1.0:
        raise InvalidInputError(f"quantile must be in [0, 1], got {quantile}", field="params")
    taps = prepare_taps(inputs, images_per_class=images_per_class, max_taps=max_taps)
    per_tap_eta = [tap_quantiles(maps, np.array([quantile])) for maps in taps.maps]
    return _slope_output(taps, per_tap_eta, {"quantile": quantile})


def _slope_output(taps: TapData, per_tap_eta: list[np.ndarray], extra: dict[str, object]) -> ScoreOutput:
    """Betti sums at one threshold per tap -> :func:`betti_decay_slope`, with θ's details."""
    per_degree = np.stack([b[0] for b in class_balanced_betti(taps, per_tap_eta)])
    omega = per_degree.sum(axis=1)
    depth = _normalised_depth(taps)
    slope = betti_decay_slope(omega, depth=depth)
    output = _theta_output(taps, omega, depth, per_degree, per_tap_eta, None, extra | {"slope": slope})
    return ScoreOutput(value=slope, details=output.details)


def _normalised_depth(taps: TapData) -> np.ndarray:
    return taps.depth_index / float(taps.total_taps - 1)


def _decay_norm(
    inputs: ScoreInputs,
    *,
    quantile: float,
    images_per_class: int,
    max_taps: int,
    curve_points: int,
    input_size: str,
) -> ScoreOutput:
    if not 0.0 <= quantile <= 1.0:
        raise InvalidInputError(f"quantile must be in [0, 1], got {quantile}", field="params")
    taps = prepare_taps(inputs, images_per_class=images_per_class, max_taps=max_taps)
    grid = np.linspace(0.1, 0.9, curve_points) if curve_points > 0 else np.zeros(0)
    levels = np.concatenate([[quantile], grid])
    per_tap_eta = [tap_quantiles(maps, levels) for maps in taps.maps]
    betti = class_balanced_betti(taps, per_tap_eta)
    per_degree = np.stack([b[0] for b in betti])
    omega = per_degree.sum(axis=1)
    curves = [b[1:].sum(axis=1) for b in betti] if curve_points > 0 else None
    extra: dict[str, object] = {"quantile": quantile}
    if curves is not None:
        extra["curve_quantiles"] = [float(v) for v in grid]
    thresholds = [eta[:1] for eta in per_tap_eta]
    return _theta_output(taps, omega, _normalised_depth(taps), per_degree, thresholds, curves, extra)


def _auc(
    inputs: ScoreInputs,
    *,
    points: int,
    low: float,
    high: float,
    images_per_class: int,
    max_taps: int,
    input_size: str,
) -> ScoreOutput:
    if points < 2 or not 0.0 <= low < high <= 1.0:
        raise InvalidInputError(
            f"need points >= 2 and 0 <= low < high <= 1, got {points}, {low}, {high}",
            field="params",
        )
    taps = prepare_taps(inputs, images_per_class=images_per_class, max_taps=max_taps)
    grid = np.linspace(low, high, points)
    per_tap_eta = [tap_quantiles(maps, grid) for maps in taps.maps]
    curves_by_degree = class_balanced_betti(taps, per_tap_eta)
    # Normalised area under the Betti-sum curve over the quantile axis (trapezoid rule).
    area = np.stack([np.trapezoid(c, grid, axis=0) / (high - low) for c in curves_by_degree])
    omega = area.sum(axis=1)
    curves = [c.sum(axis=1) for c in curves_by_degree]
    extra: dict[str, object] = {"curve_quantiles": [float(v) for v in grid]}
    return _theta_output(taps, omega, _normalised_depth(taps), area, per_tap_eta, curves, extra)


# input_size is read by the pipeline (zoorank.rank.tap_input_size), which extracts the taps at
# that resolution; the score itself only sees the taps it is given.
_COMMON = {"images_per_class": 5, "max_taps": 0, "input_size": "job"}
# The slopes read topology at 64 px whatever the job's resolution: at 32 px the deep taps of
# the offline models are 1x1 maps and the twin check fails (benchmarks/results/betti_variants*).
SLOPE_INPUT_SIZE = 64

register_score(
    ScoreSpec(
        name="betti_decay",
        family="topology",
        compute=_decay,
        needs=frozenset({"taps"}),
        direction="lower",
        paper=PAPER,
        # The exact recipe at the model's own resolution with its Betti curve: 9.4 s per model
        # on average in the demo job (70% of it), for a score that ranks the wrong way in the
        # benchmark; it runs when asked for by name.
        cost="expensive",
        params={"eta": 0.5, **_COMMON, "input_size": "native", "curve_points": 8},
        description=(
            "θ = c1 + c2/2 + c3/2 of a ridge cubic fit of the normalised Betti sum at raw "
            "threshold eta over taps 1..L (the paper's recipe); lower ranks higher."
        ),
    )
)
register_score(
    ScoreSpec(
        name="betti_decay_norm",
        family="topology",
        compute=_decay_norm,
        needs=frozenset({"taps"}),
        direction="lower",
        paper=PAPER,
        cost="moderate",
        params={"quantile": 0.5, **_COMMON, "curve_points": 0},
        description=(
            "betti_decay with depth scaled to [0, 1] and each tap thresholded at a quantile of "
            "its own activations: comparable across architectures."
        ),
    )
)
register_score(
    ScoreSpec(
        name="betti_slope",
        family="topology",
        compute=_slope,
        needs=frozenset({"taps"}),
        direction="lower",
        paper=PAPER,
        cost="moderate",
        params={"eta": 0.5, **_COMMON, "input_size": str(SLOPE_INPUT_SIZE)},
        description=(
            "Least-squares slope of the normalised Betti sum at threshold eta over depth in "
            "[0, 1]: how fast Betti numbers fall with depth; lower ranks higher."
        ),
    )
)
register_score(
    ScoreSpec(
        name="betti_slope_norm",
        family="topology",
        compute=_slope_norm,
        needs=frozenset({"taps"}),
        direction="lower",
        paper=PAPER,
        cost="moderate",
        params={"quantile": 0.9, **_COMMON, "input_size": str(SLOPE_INPUT_SIZE)},
        description=(
            "betti_slope with each tap thresholded at a quantile of its own activations instead "
            "of one raw eta."
        ),
    )
)
register_score(
    ScoreSpec(
        name="betti_auc",
        family="topology",
        compute=_auc,
        needs=frozenset({"taps"}),
        direction="lower",
        paper=PAPER,
        cost="expensive",
        params={"points": 5, "low": 0.1, "high": 0.9, **_COMMON},
        description=(
            "betti_decay_norm on the normalised area under each tap's Betti curve over "
            "quantile thresholds low..high instead of one threshold."
        ),
    )
)
