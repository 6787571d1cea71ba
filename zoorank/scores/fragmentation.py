"""Fragmentation: class changes along straight paths between two samples of the same class.

Mouton, Rabe, Haasbroek, Theunissen, Potgieter, Davel. "Is network fragmentation a useful
complexity measure?", arXiv 2411.04695 (2024), after Somepalli et al., "Can Neural Nets Learn
the Same Model Twice?", CVPR 2022. A classifier whose decision regions for a class are
contiguous keeps its prediction along the segment joining two samples of that class; a
fragmented one flips back and forth, in input space and in hidden representations alike.

For endpoints ``a, b`` of the same class and ``T`` evenly spaced points
``x_t = (1 - t) a + t b``, ``t = 0, 1/(T-1), ..., 1``, the path's fragmentation is

    F(a, b) = #{ k : ŷ(x_{t_k}) ≠ ŷ(x_{t_{k+1}}) } ,

the number of prediction changes between neighbouring points (endpoints included). The score
is the mean of ``F`` over seeded same-class pairs; lower is better.

Two variants share the classifier "linear probe on the pre-logits":

* ``fragmentation`` -- paths between input images, classified by model + probe;
* ``hidden_fragmentation`` -- paths between the pre-logit vectors of *held-out* samples,
  classified by a probe fitted on the other rows. A linear probe's decision regions are
  convex, so a hidden path changes class only when its endpoints are predicted differently;
  that variant mostly measures how often two samples of one class land in different probe
  regions (plus third classes crossed on the way). ``classifier="nearest_neighbour"`` uses a
  1-NN rule over the train rows instead, whose regions (unions of Voronoi cells) are not
  convex, so it also sees same-class paths that pass through another class's samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import (
    check_model_output,
    content_keys,
    content_order_split,
    fit_linear_probe,
    image_space_inputs,
)
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

Classify = Callable[[np.ndarray], np.ndarray]


def path_class_changes(
    classify: Classify,
    starts: np.ndarray,
    ends: np.ndarray,
    *,
    steps: int = 16,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction changes ``(p,)`` along straight paths, and the endpoint predictions ``(p, 2)``.

    Formula: ``F = #{k : ŷ(x_k) ≠ ŷ(x_{k+1})}`` over ``x_k = (1 - k/(T-1)) a + k/(T-1) b``,
    ``k = 0..T-1`` with ``T = steps``.

    Args:
        classify: rows ``(b, ...)`` -> predicted classes ``(b,)``.
        starts: ``(p, ...)`` path starts; ``ends``: same shape, path ends.
        steps: ``T >= 2`` points per path, endpoints included.
        batch_size: points classified per call.

    Raises:
        InvalidInputError: ``steps < 2`` or ``starts``/``ends`` of different shapes.

    Example:
        >>> sign = lambda x: (x[:, 0] > 0).astype(int)
        >>> starts, ends = np.array([[-1.0], [1.0]]), np.array([[1.0], [2.0]])
        >>> path_class_changes(sign, starts, ends, steps=5)[0]
        array([1, 0])
    """
    if steps < 2:
        raise InvalidInputError(f"steps must be at least 2, got {steps}", field="params")
    if starts.shape != ends.shape:
        raise InvalidInputError(
            f"path starts {starts.shape} and ends {ends.shape} must have the same shape",
            field="params",
        )
    p = starts.shape[0]
    t = np.linspace(0.0, 1.0, steps)
    extra = (1,) * (starts.ndim - 1)
    predictions = np.empty((p, steps), dtype=np.int64)
    per_batch = max(1, batch_size // steps)
    for first in range(0, p, per_batch):
        a, b = starts[first : first + per_batch], ends[first : first + per_batch]
        tt = t.reshape(1, steps, *extra)
        points = (1.0 - tt) * a[:, None] + tt * b[:, None]  # (q, T, ...)
        flat = points.reshape(-1, *starts.shape[1:]).astype(starts.dtype, copy=False)
        predictions[first : first + a.shape[0]] = np.asarray(classify(flat)).reshape(-1, steps)
    changes = (predictions[:, 1:] != predictions[:, :-1]).sum(axis=1)
    return changes, predictions[:, [0, -1]]


def same_class_pairs(keys_n: np.ndarray, labels_n: np.ndarray, *, pairs: int, seed: int) -> np.ndarray:
    """``(pairs, 2)`` row indices of distinct same-class rows, classes taken in turn, seeded.

    The choice follows the rows' content keys (see ``_geometry.content_keys``): rows in key
    order within a class, classes in the order of their smallest key, so it survives a shuffle
    of the samples and a renaming of the classes. Classes with a single row are skipped.

    Raises:
        InvalidInputError: no class has two rows.
    """
    rng = np.random.default_rng(seed)
    members = []
    for cls in np.unique(labels_n):
        rows = np.flatnonzero(labels_n == cls)
        if rows.size >= 2:
            members.append(rows[np.argsort(keys_n[rows], kind="stable")])
    members.sort(key=lambda rows: float(keys_n[rows[0]]))
    if not members:
        raise InvalidInputError("fragmentation needs a class with at least 2 samples", field="labels")
    chosen = []
    for k in range(pairs):
        rows = members[k % len(members)]
        i, j = rng.choice(rows.size, size=2, replace=False)
        chosen.append((rows[i], rows[j]))
    return np.asarray(chosen, dtype=np.int64).reshape(-1, 2)


def _summary(changes: np.ndarray, ends: np.ndarray, pairs: np.ndarray, steps: int) -> ScoreOutput:
    details: dict[str, Any] = {
        "paths": int(changes.size),
        "steps": steps,
        "fraction_fragmented": float((changes > 0).mean()),
        "max_changes": int(changes.max()),
        "endpoints_disagree": float((ends[:, 0] != ends[:, 1]).mean()),
        "pairs": pairs.tolist(),
        "changes": changes.tolist(),
    }
    return ScoreOutput(value=float(changes.mean()), details=details)


def _compute_input(inputs: ScoreInputs, *, pairs: int, steps: int, batch_size: int, c: float) -> ScoreOutput:
    assert inputs.images is not None and inputs.model is not None
    labels = check_labels(inputs.labels)
    images, model, features = image_space_inputs(inputs, labels, batch_size=batch_size)
    probe = fit_linear_probe(features, labels, c=c)
    head = probe.as_torch()

    def classify(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            return head(check_model_output(model(x), x.shape[0])).argmax(dim=1).cpu().numpy()

    chosen = same_class_pairs(content_keys(images, seed=inputs.seed), labels, pairs=pairs, seed=inputs.seed)
    changes, ends = path_class_changes(
        classify, images[chosen[:, 0]], images[chosen[:, 1]], steps=steps, batch_size=batch_size
    )
    return _summary(changes, ends, chosen, steps)


def nearest_neighbour_classifier(train_nd: np.ndarray, labels_n: np.ndarray) -> Classify:
    """1-NN (Euclidean) over ``train_nd``: rows ``(b, d)`` -> the label of the nearest train row.

    Example:
        >>> nn1 = nearest_neighbour_classifier(np.array([[0.0], [10.0]]), np.array([3, 5]))
        >>> nn1(np.array([[1.0], [6.0]]))
        array([3, 5])
    """
    train_sq = (train_nd**2).sum(axis=1)

    def classify(batch: np.ndarray) -> np.ndarray:
        sq = train_sq[None, :] - 2.0 * batch @ train_nd.T  # + ||b||², the same for every row
        return labels_n[sq.argmin(axis=1)]

    return classify


def _compute_hidden(
    inputs: ScoreInputs, *, pairs: int, steps: int, c: float, holdout: float, classifier: str
) -> ScoreOutput:
    assert inputs.features is not None
    labels = check_labels(inputs.labels, min_per_class=2)
    features = check_matrix(inputs.features, labels.shape[0])
    keys = content_keys(features, seed=inputs.seed)
    # Fitted on every row, a probe on separable pre-logits puts both ends of every same-class
    # path in one convex region and the score is 0 for every model; paths therefore join
    # held-out rows, and the classifier sees only the train rows.
    train, test = content_order_split(keys, labels, holdout=holdout)
    classify: Classify
    if classifier == "probe":
        probe = fit_linear_probe(features[train], labels[train], c=c)

        def classify(batch: np.ndarray) -> np.ndarray:
            return probe.scores(batch).argmax(axis=1)

    elif classifier == "nearest_neighbour":
        classify = nearest_neighbour_classifier(features[train], labels[train])
    else:
        raise InvalidInputError(
            f"classifier must be 'probe' or 'nearest_neighbour', got {classifier!r}",
            field="params",
        )
    chosen = test[same_class_pairs(keys[test], labels[test], pairs=pairs, seed=inputs.seed)]
    changes, ends = path_class_changes(
        classify, features[chosen[:, 0]], features[chosen[:, 1]], steps=steps, batch_size=4096
    )
    output = _summary(changes, ends, chosen, steps)
    output.details["classifier"] = classifier
    return output


_PAPER = (
    "Mouton, Rabe, Haasbroek, Theunissen, Potgieter, Davel 2024, Is network fragmentation a "
    "useful complexity measure? (arXiv 2411.04695)"
)

register_score(
    ScoreSpec(
        name="fragmentation",
        family="diagnostic",
        compute=_compute_input,
        needs=frozenset({"images", "model"}),
        direction="lower",
        paper=_PAPER,
        cost="expensive",
        params={"pairs": 32, "steps": 16, "batch_size": 64, "c": 1.0},
        description=(
            "Mean number of class changes of model + linear probe along straight paths between "
            "same-class input images."
        ),
    )
)

register_score(
    ScoreSpec(
        name="hidden_fragmentation",
        family="diagnostic",
        compute=_compute_hidden,
        needs=frozenset({"features"}),
        direction="lower",
        paper=_PAPER,
        cost="cheap",
        params={
            "pairs": 256,
            "steps": 32,
            "c": 1.0,
            "holdout": 0.5,
            "classifier": "probe",
        },
        description=(
            "Mean number of class changes of a linear probe (or 1-NN) fitted on a train split, "
            "along straight paths between the pre-logits of held-out same-class samples."
        ),
    )
)
