"""Layer diagnostics from the taps: activation sparsity and class clustering per layer.

Both read the layer taps ``{name: (m, c, h, w)}`` of the ``m`` samples ``tap_rows`` and store
one number per tap in ``details["per_tap"]``; the score is a summary over taps.

**Activation sparsity** -- the share of exactly-zero values in a post-activation map,

    s_l = #{ a ∈ A_l : a = 0 } / |A_l| ,

in the spirit of Davel, Theunissen, Pretorius, Barnard, "DNNs as Layers of Cooperating
Classifiers", AAAI 2020, which reads ReLU nodes as on/off classifiers. Only taps that are
non-negative everywhere (after a ReLU-family activation: ReLU, ReLU6, ...) are summarised;
pre-activation or linear-bottleneck taps are reported but not averaged, because an exact zero
there carries no meaning. Direction *lower*, chosen from measurement rather than theory: at
random initialisation batch-normalised pre-activations are symmetric around zero, so a ReLU
map is about half zeros; on ``builtin:digits`` (64 px) the four ImageNet-pretrained models of
the offline zoo had 22-32 % zeros after the stem activation against 42-53 % for their
random-init twins -- trained early units respond to low-level structure present almost
everywhere, so more of the layer is in use. Deep post-ReLU layers of trained networks are
often *sparser* than at initialisation, so the direction may flip where taps include them;
with the timm EfficientNet/MobileNet taps only the stem activation is post-ReLU (block
outputs are linear bottlenecks), which is what the measurement above covers.

**Cluster quality** -- the silhouette coefficient (Rousseeuw 1987) of the class groups of
each tap's maps, global-average-pooled to ``(m, c)`` (or flattened), on a seeded,
class-balanced subsample:

    sil(i) = (b_i - a_i) / max(a_i, b_i) ,   S_l = mean_i sil(i) ∈ [-1, 1] ,

``a_i`` the mean distance of sample ``i`` to its own class, ``b_i`` to the nearest other class.
Direction *higher*: the classes of the target task forming tighter, better-separated groups in
a layer's space is what a good feature extractor for that task provides. The summary is the
mean over taps (``summary="mean"``) or the last tap's value (``summary="last"``).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
from sklearn.metrics import silhouette_score

from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import content_keys, content_order_subset
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_tap_rows
from zoorank.scores.registry import ScoreSpec, register_score

Pooling = Literal["mean", "flatten"]


def zero_fraction(activations: np.ndarray) -> float:
    """Share of entries exactly equal to 0 in an array of any shape.

    Example:
        >>> zero_fraction(np.maximum(np.array([-1.0, 2.0, -3.0, 4.0]), 0.0))
        0.5
    """
    return float((activations == 0).mean())


def pooled(maps: np.ndarray, *, pooling: Pooling = "mean") -> np.ndarray:
    """``(m, c, h, w)`` maps -> ``(m, c)`` channel means, or ``(m, c·h·w)`` with ``flatten``.

    2-D taps ``(m, d)`` pass through; other ranks are averaged over every axis after the 2nd.

    Raises:
        InvalidInputError: unknown ``pooling`` or a tap with fewer than 2 dimensions.
    """
    if pooling not in ("mean", "flatten"):
        raise InvalidInputError(f"pooling must be 'mean' or 'flatten', got {pooling!r}", field="params")
    if maps.ndim < 2:
        raise InvalidInputError(f"a tap must be (m, c, ...), got shape {maps.shape}", field="taps")
    if maps.ndim == 2:
        return maps.astype(np.float64, copy=False)
    if pooling == "flatten":
        return maps.reshape(maps.shape[0], -1).astype(np.float64, copy=False)
    return maps.reshape(maps.shape[0], maps.shape[1], -1).mean(axis=2, dtype=np.float64)


def class_silhouette(points_md: np.ndarray, labels_m: np.ndarray) -> float:
    """Silhouette coefficient of the class groups of ``points (m, d)`` (Euclidean), in [-1, 1].

    Raises:
        InvalidInputError: fewer than 2 classes, or every sample a class of its own.

    Example:
        >>> pts = np.array([[0.0], [0.1], [10.0], [10.1]]); lab = np.array([0, 0, 1, 1])
        >>> round(class_silhouette(pts, lab), 2)
        0.99
    """
    classes = np.unique(labels_m).size
    if not 2 <= classes <= labels_m.shape[0] - 1:
        raise InvalidInputError(
            f"a silhouette needs 2 to m-1 classes among m samples; got {classes} among {labels_m.shape[0]}",
            field="taps",
        )
    if np.ptp(points_md, axis=0).max(initial=0.0) == 0:
        return 0.0  # every point identical: no cluster structure at all
    return float(silhouette_score(points_md, labels_m, metric="euclidean"))


def check_taps(inputs: ScoreInputs) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The taps as finite arrays and the labels of their rows ``(m,)``.

    Raises:
        InvalidInputError: no taps, taps of different row counts, rows out of range, NaN/inf.
    """
    labels = check_labels(inputs.labels)
    if not inputs.taps:
        raise InvalidInputError("no layer taps were given", field="taps")
    taps = {name: np.asarray(arr) for name, arr in inputs.taps.items()}
    rows = {arr.shape[0] if arr.ndim else -1 for arr in taps.values()}
    if len(rows) != 1:
        raise InvalidInputError(f"taps disagree on the number of samples: {sorted(rows)}", field="taps")
    m = rows.pop()
    tap_rows = check_tap_rows(inputs.tap_rows, m, labels.shape[0])
    for name, arr in taps.items():
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise InvalidInputError(
                f"tap {name!r} is not numeric or contains NaN/inf; clean it first", field="taps"
            )
    return taps, labels[tap_rows]


def _compute_sparsity(inputs: ScoreInputs) -> ScoreOutput:
    taps, _ = check_taps(inputs)
    per_tap: dict[str, dict[str, Any]] = {}
    for name, arr in taps.items():
        per_tap[name] = {"zero_fraction": zero_fraction(arr), "nonnegative": bool(arr.min() >= 0)}
    used = [name for name, info in per_tap.items() if info["nonnegative"]]
    fallback = not used
    used = used or list(per_tap)
    value = float(np.mean([per_tap[name]["zero_fraction"] for name in used]))
    return ScoreOutput(
        value=value,
        details={"per_tap": per_tap, "summarised_taps": used, "no_post_activation_tap": fallback},
    )


def _compute_clusters(inputs: ScoreInputs, *, samples: int, pooling: str, summary: str) -> ScoreOutput:
    if summary not in ("mean", "last"):
        raise InvalidInputError(f"summary must be 'mean' or 'last', got {summary!r}", field="params")
    taps, labels = check_taps(inputs)
    names = list(taps)
    mode = cast(Pooling, pooling)
    last = pooled(taps[names[-1]], pooling=mode)
    pick = content_order_subset(content_keys(last, seed=inputs.seed), labels, size=samples)
    per_tap = {name: class_silhouette(pooled(taps[name][pick], pooling=mode), labels[pick]) for name in names}
    value = per_tap[names[-1]] if summary == "last" else float(np.mean(list(per_tap.values())))
    return ScoreOutput(
        value=value, details={"per_tap": per_tap, "samples": int(pick.size), "pooling": pooling}
    )


register_score(
    ScoreSpec(
        name="activation_sparsity",
        family="diagnostic",
        compute=_compute_sparsity,
        needs=frozenset({"taps"}),
        direction="lower",
        paper=(
            "Davel, Theunissen, Pretorius, Barnard 2020, DNNs as Layers of Cooperating Classifiers (AAAI)"
        ),
        cost="cheap",
        description="Mean share of exact zeros over the post-activation (non-negative) taps.",
    )
)

register_score(
    ScoreSpec(
        name="cluster_quality",
        family="diagnostic",
        compute=_compute_clusters,
        needs=frozenset({"taps"}),
        direction="higher",
        paper=(
            "Rousseeuw 1987, Silhouettes (J. Comput. Appl. Math.); per-layer class clustering "
            "as in the Davel group's layer diagnostics"
        ),
        cost="moderate",
        params={"samples": 500, "pooling": "mean", "summary": "mean"},
        description="Silhouette of the class groups of each tap's pooled maps, mean over taps.",
    )
)
