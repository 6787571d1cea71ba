"""Explanations of why a model suits a target: layer-wise decision trees over ReLU codes."""

from zoorank.explain.layer_trees import (
    Explanation,
    LayerTree,
    ReluMLP,
    chance_corrected,
    explain_features,
    explain_mlp,
    feature_attribution,
    fidelity_curves,
    fit_relu_mlp,
    leaves_grid,
    relu_codes,
    saliency_maps,
)

__all__ = [
    "Explanation",
    "LayerTree",
    "ReluMLP",
    "chance_corrected",
    "explain_features",
    "explain_mlp",
    "feature_attribution",
    "fidelity_curves",
    "fit_relu_mlp",
    "leaves_grid",
    "relu_codes",
    "saliency_maps",
]
