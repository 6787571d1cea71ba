"""Layer-tree fidelity: how simply a ReLU head on the pre-logits separates the target's classes.

Mouton & Davel, "Exploring layerwise decision making in DNNs" (arXiv 2202.00345): a decision
tree over a hidden layer's binary ReLU codes explains the network's classification at that
layer. Here (:mod:`zoorank.explain.layer_trees`) a ``depth × width`` ReLU MLP is trained on the
frozen pre-logits of a content-ordered train split; for each hidden layer a best-first tree over
its codes, limited to ``leaves_per_class · C`` leaves, is fitted to the MLP's predictions on
the train rows, and the score is

    value = max over hidden layers of κ(tree, MLP) on the held-out rows   (higher ranks higher)

with κ Cohen's chance-corrected agreement ``(p_o - p_e) / (1 - p_e)`` of the tree's and the
MLP's predicted classes: ``p_o`` is the paper's *fidelity* (share of held-out rows where the two
agree), ``p_e`` the agreement expected from their class frequencies alone. Without the
correction a head that predicts one class everywhere would be explained "perfectly" by a
one-leaf tree. A layer
whose codes let a small tree mimic the head separates the classes simply; on features that
carry nothing of the classes the head's held-out predictions follow no simple code pattern.

The full explanation is stored beside the value: per layer fidelity, accuracy, depth, leaves,
rules, a tree to draw, input × gradient attribution of the top splits, the fidelity curve over
leaf budgets, and saliency maps of each layer's root-split unit through the backbone for a few
samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# A module import (not ``from``): zoorank.explain imports zoorank.scores helpers, so either
# package may be imported first.
import zoorank.explain.layer_trees as trees
from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import check_images, content_keys
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels
from zoorank.scores.registry import ScoreSpec, register_score


def _compute(
    inputs: ScoreInputs,
    *,
    width: int,
    depth: int,
    alpha: float,
    leaves_per_class: float,
    holdout: float,
    saliency_samples: int,
) -> ScoreOutput:
    assert inputs.features is not None
    if leaves_per_class <= 0:
        raise InvalidInputError("leaves_per_class must be > 0", field="params")
    explanation = trees.explain_features(
        inputs.features,
        inputs.labels,
        width=width,
        depth=depth,
        alpha=alpha,
        holdout=holdout,
        seed=inputs.seed,
    )
    x = np.asarray(inputs.features, dtype=np.float64)
    labels = check_labels(inputs.labels)  # as explain_features encoded them
    budget = max(2, round(leaves_per_class * explanation.classes))
    grid = sorted(set(trees.leaves_grid(explanation.classes, max_leaves_per_class=16)) | {budget})
    fidelity, kappa = trees.fidelity_curves(
        explanation.mlp, x, explanation.train, explanation.held_out, grid, seed=inputs.seed
    )
    column = grid.index(budget)
    at_budget = [curve[column] for curve in kappa]
    best = int(np.argmax(at_budget))
    details: dict[str, Any] = explanation.to_dict() | {
        "leaf_budget": budget,
        "fidelity_at_budget": [curve[column] for curve in fidelity],
        "kappa_at_budget": at_budget,
        "best_layer": best + 1,
        "fidelity_curves": {"leaves": grid, "fidelity": fidelity, "kappa": kappa},
    }
    if saliency_samples > 0 and inputs.model is not None and inputs.images is not None:
        details["saliency"] = _saliency(inputs, explanation, labels, saliency_samples)
    return ScoreOutput(value=at_budget[best], details=details)


def _saliency(inputs: ScoreInputs, explanation: Any, labels: np.ndarray, count: int) -> list[dict[str, Any]]:
    """Saliency of each layer's root-split unit for the first held-out row (content order) of
    ``count`` classes."""
    assert inputs.model is not None
    images = check_images(inputs.images, labels.size)
    held = explanation.held_out
    held = held[np.argsort(content_keys(images[held], seed=inputs.seed), kind="stable")]
    rows: list[int] = []
    for row in held:
        if labels[row] not in labels[rows] and len(rows) < count:
            rows.append(int(row))
    out = []
    for layer in explanation.layers:
        if not layer.splits:
            continue
        unit = int(layer.splits[0]["unit"].split(".u")[1])
        maps = trees.saliency_maps(inputs.model, images[rows], explanation.mlp, layer.layer - 1, unit)
        thumbs = _thumbnails(images[rows], max(maps.shape[-2:]))
        out.append(
            {
                "unit": layer.splits[0]["unit"],
                "samples": [
                    {
                        "row": row,
                        "label": int(labels[row]),
                        "image": np.round(thumb, 3).tolist(),
                        "map": np.round(m, 3).tolist(),
                    }
                    for row, thumb, m in zip(rows, thumbs, maps, strict=True)
                ],
            }
        )
    return out


def _thumbnails(images_nchw: np.ndarray, size: int) -> np.ndarray:
    """Grey ``(s, h, w)`` in [0, 1]: channel mean, pooled as the maps are, min-max scaled."""
    grey = trees.pooled(torch.from_numpy(images_nchw.mean(axis=1, keepdims=True)), size)
    low = grey.min(axis=(1, 2), keepdims=True)
    span = grey.max(axis=(1, 2), keepdims=True) - low
    return (grey - low) / np.where(span > 0, span, 1.0)


register_score(
    ScoreSpec(
        name="layer_tree_fidelity",
        family="explanation",
        compute=_compute,
        needs=frozenset({"features", "model", "images"}),
        direction="higher",
        paper="Mouton, Davel 2022, Exploring layerwise decision making in DNNs (arXiv 2202.00345)",
        cost="expensive",
        params={
            "width": 32,
            "depth": 2,
            "alpha": 1e-3,
            "leaves_per_class": 2.0,
            "holdout": 0.3,
            "saliency_samples": 3,
        },
        description=(
            "Chance-corrected held-out agreement (Cohen's kappa) of a decision tree (2 leaves per class) "
            "over one hidden layer's binary ReLU codes with a small MLP head on the pre-logits (best "
            "layer; Mouton & Davel)."
        ),
    )
)
