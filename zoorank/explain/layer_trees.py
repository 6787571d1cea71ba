"""Layer-wise decision trees over binary ReLU codes (Mouton & Davel 2022, arXiv 2202.00345).

Mouton and Davel, "Exploring layerwise decision making in DNNs": encode every hidden ReLU unit
of an MLP as on (``z > 0``) or off for each sample; a decision tree from one layer's binary
codes to the network's predicted class explains the classification as that layer sees it. A
tree that agrees with the network (*fidelity*) with few leaves means the layer separates the
classes simply.

Here the MLP is a small head trained on a backbone's frozen pre-logit features, so the trees
say how simply *this backbone's features* separate the user's classes, layer by layer.

Attribution is input × gradient (Shrikumar, Greenside, Shcherbina, Kundaje, "Not just a black
box", arXiv 1605.01713): for the unit a split tests, ``x_j · ∂z_u/∂x_j`` for every feature
dimension ``j`` (averaged in absolute value over the held-out rows) and, through the backbone,
``Σ_c |image · ∂z_u/∂image|`` per pixel for a few samples (a saliency map).

Everything is a function of the rows' contents: rows are put in content order (a seeded hash of
each row) before any fitting, so the result is the same under a shuffle of the samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import content_keys, content_order_split
from zoorank.scores.inputs import check_labels, check_matrix

# Rules and drawn trees stop at this depth: deeper ones are not read by people.
SHOWN_DEPTH = 4


@dataclass(frozen=True)
class ReluMLP:
    """A ReLU MLP ``x -> (x - mean) / scale -> [W_k h + b_k, ReLU]* -> W_out h + b_out``.

    ``weights[k]`` is ``(out, in)``; the last pair is the output layer. One output unit means a
    binary classifier (class 1 when the output is positive), as scikit-learn builds for 2
    classes; otherwise the class is the argmax.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    mean: np.ndarray | float = 0.0
    scale: np.ndarray | float = 1.0

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.weights) - 1

    def pre_activations(self, x_nd: np.ndarray) -> list[np.ndarray]:
        """Hidden pre-activations ``z`` per layer, each ``(n, width_k)``; the codes are ``z > 0``."""
        h = (np.asarray(x_nd, dtype=np.float64) - self.mean) / self.scale
        out = []
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = h @ w.T + b
            out.append(z)
            h = np.maximum(z, 0.0)
        return out

    def predict(self, x_nd: np.ndarray) -> np.ndarray:
        """Predicted class ``(n,)``."""
        hidden = self.pre_activations(x_nd)
        h = np.maximum(hidden[-1], 0.0) if hidden else (np.asarray(x_nd) - self.mean) / self.scale
        logits = h @ self.weights[-1].T + self.biases[-1]
        if logits.shape[1] == 1:
            return (logits[:, 0] > 0).astype(np.int64)
        return logits.argmax(axis=1).astype(np.int64)

    def unit_gradient(self, x_nd: np.ndarray, layer: int, unit: int) -> np.ndarray:
        """``∂z_u/∂x`` ``(n, d)`` of hidden unit ``unit`` of layer ``layer`` (0-based) at each row.

        The network is piecewise linear: the gradient is the product of the weight matrices
        with each earlier layer's on/off mask, divided by the input scale.
        """
        hidden = self.pre_activations(x_nd)
        grad = np.broadcast_to(self.weights[layer][unit], (x_nd.shape[0], self.weights[layer].shape[1]))
        for k in range(layer - 1, -1, -1):
            grad = (grad * (hidden[k] > 0)) @ self.weights[k]
        return grad / self.scale


def fit_relu_mlp(
    features_nd: np.ndarray, labels_n: np.ndarray, *, width: int, depth: int, alpha: float, seed: int
) -> ReluMLP:
    """A ``depth``-hidden-layer ReLU MLP of ``width`` units, trained by L-BFGS (full batch, so
    the fit does not depend on mini-batch order) on standardised features."""
    mean = features_nd.mean(axis=0)
    scale = features_nd.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    mlp = MLPClassifier(
        hidden_layer_sizes=(width,) * depth,
        activation="relu",
        solver="lbfgs",
        alpha=alpha,
        max_iter=500,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit((features_nd - mean) / scale, labels_n)
    return ReluMLP(
        weights=[w.T.copy() for w in mlp.coefs_],
        biases=[b.copy() for b in mlp.intercepts_],
        mean=mean,
        scale=scale,
    )


def relu_codes(mlp: ReluMLP, x_nd: np.ndarray) -> list[np.ndarray]:
    """Binary activation codes ``(n, width_k)`` bool per hidden layer: unit on (``z > 0``)."""
    return [z > 0 for z in mlp.pre_activations(x_nd)]


def fit_code_tree(
    codes_train: np.ndarray, target_train: np.ndarray, *, seed: int, max_leaf_nodes: int | None = None
) -> DecisionTreeClassifier:
    """A decision tree from binary codes to the MLP's predicted class."""
    tree = DecisionTreeClassifier(random_state=seed, max_leaf_nodes=max_leaf_nodes)
    return tree.fit(codes_train.astype(np.float64), target_train)


@dataclass
class LayerTree:
    """One hidden layer's tree and how well it explains the MLP on held-out rows."""

    layer: int  # 1-based, as in the paper
    width: int
    fidelity: float  # tree agrees with the MLP's prediction
    accuracy: float  # tree agrees with the true label
    depth: int
    leaves: int
    constant_units: int  # always on or always off over every row: carry no information
    tree: dict[str, Any]  # nested splits, to SHOWN_DEPTH
    rules: str
    splits: list[dict[str, Any]] = field(default_factory=list)  # top splits with attribution
    note: str = ""


def unit_name(layer: int, unit: int) -> str:
    """``L{layer}.u{unit}`` (layer 1-based)."""
    return f"L{layer}.u{unit}"


def tree_structure(
    tree: DecisionTreeClassifier, layer: int, *, max_depth: int = SHOWN_DEPTH
) -> dict[str, Any]:
    """The tree as nested dicts: a split ``{"unit", "on", "off", "samples"}`` or a leaf
    ``{"class", "samples", "purity"}``; below ``max_depth`` a node is cut to a leaf marked
    ``"cut": true``."""
    t = tree.tree_
    classes = tree.classes_

    def node(i: int, depth: int) -> dict[str, Any]:
        counts = t.value[i][0]
        leaf = {
            "class": int(classes[int(np.argmax(counts))]),
            "samples": int(t.n_node_samples[i]),
            "purity": round(float(counts.max() / counts.sum()), 4),
        }
        if t.children_left[i] == -1:
            return leaf
        if depth >= max_depth:
            return leaf | {"cut": True}
        # Codes are 0/1, the threshold 0.5: left is "off", right is "on".
        return {
            "unit": unit_name(layer, int(t.feature[i])),
            "samples": int(t.n_node_samples[i]),
            "off": node(int(t.children_left[i]), depth + 1),
            "on": node(int(t.children_right[i]), depth + 1),
        }

    return node(0, 0)


def tree_rules(structure: dict[str, Any]) -> str:
    """Indented ``if unit on / off`` rules of :func:`tree_structure`'s output."""
    lines: list[str] = []

    def walk(node: dict[str, Any], indent: str) -> None:
        if "unit" not in node:
            more = " (deeper splits not shown)" if node.get("cut") else ""
            leaf = f"-> class {node['class']} ({node['samples']} rows, purity {node['purity']})"
            lines.append(f"{indent}{leaf}{more}")
            return
        for state in ("on", "off"):
            lines.append(f"{indent}{node['unit']} {state}:")
            walk(node[state], indent + "  ")

    walk(structure, "")
    return "\n".join(lines)


def top_splits(tree: DecisionTreeClassifier, count: int) -> list[tuple[int, int]]:
    """``(node, unit)`` of the first ``count`` splits in breadth-first order (root first)."""
    t = tree.tree_
    out: list[tuple[int, int]] = []
    queue = [0]
    while queue and len(out) < count:
        i = queue.pop(0)
        if t.children_left[i] != -1:
            out.append((i, int(t.feature[i])))
            queue += [int(t.children_left[i]), int(t.children_right[i])]
    return out


def feature_attribution(mlp: ReluMLP, x_nd: np.ndarray, layer: int, unit: int) -> np.ndarray:
    """Mean ``|x_j · ∂z_u/∂x_j|`` ``(d,)`` over the rows (input × gradient on the standardised
    input, whose zero is the feature mean), for hidden unit ``unit`` of layer ``layer`` (0-based)."""
    x_std = (x_nd - mlp.mean) / mlp.scale
    grad_std = mlp.unit_gradient(x_nd, layer, unit) * mlp.scale  # ∂z/∂x_std
    return np.abs(x_std * grad_std).mean(axis=0)


@dataclass
class Explanation:
    """Everything :func:`explain_features` finds for one model and target."""

    layers: list[LayerTree]
    mlp_accuracy: float  # MLP on the held-out rows against the true labels
    train_rows: int
    held_out_rows: int
    classes: int
    mlp: ReluMLP
    train: np.ndarray  # row indices, in the (content) order the MLP was fitted in
    held_out: np.ndarray  # row indices

    def to_dict(self) -> dict[str, Any]:
        return {
            "mlp_accuracy": self.mlp_accuracy,
            "train_rows": self.train_rows,
            "held_out_rows": self.held_out_rows,
            "classes": self.classes,
            "layers": [vars(layer).copy() for layer in self.layers],
            "method": "Mouton & Davel 2022 (arXiv 2202.00345); attribution: input x gradient "
            "(Shrikumar et al. 2016, arXiv 1605.01713)",
        }


def _checked(features_nd: np.ndarray, labels_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = check_labels(labels_n, min_per_class=2)
    return check_matrix(features_nd, labels.shape[0]), labels


def explain_mlp(
    mlp: ReluMLP,
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    train: np.ndarray,
    held_out: np.ndarray,
    *,
    seed: int = 0,
    attributed_splits: int = 3,
    top_features: int = 5,
) -> list[LayerTree]:
    """One :class:`LayerTree` per hidden layer of ``mlp``: trees fitted on the ``train`` rows'
    codes to the MLP's predictions, judged on the ``held_out`` rows."""
    predicted = mlp.predict(features_nd)
    codes = relu_codes(mlp, features_nd)
    layers = []
    for k, code in enumerate(codes):
        tree = fit_code_tree(code[train], predicted[train], seed=seed)
        guess = tree.predict(code[held_out].astype(np.float64))
        constant = int(np.sum(code.all(axis=0) | (~code).all(axis=0)))
        structure = tree_structure(tree, k + 1)
        note = ""
        if constant == code.shape[1]:
            note = (
                f"every unit of layer {k + 1} is always on or always off on these rows: its codes carry "
                "no information, and its tree is one leaf"
            )
        splits = []
        for node, unit in top_splits(tree, attributed_splits):
            attribution = feature_attribution(mlp, features_nd[held_out], k, unit)
            share = attribution / max(float(attribution.sum()), np.finfo(float).tiny)
            order = np.argsort(-attribution, kind="stable")[:top_features]
            splits.append(
                {
                    "node": node,
                    "unit": unit_name(k + 1, unit),
                    "on_fraction": float(code[:, unit].mean()),
                    "top_features": [{"feature": int(j), "share": round(float(share[j]), 4)} for j in order],
                }
            )
        layers.append(
            LayerTree(
                layer=k + 1,
                width=code.shape[1],
                fidelity=float((guess == predicted[held_out]).mean()),
                accuracy=float((guess == labels_n[held_out]).mean()),
                depth=int(tree.get_depth()),
                leaves=int(tree.get_n_leaves()),
                constant_units=constant,
                tree=structure,
                rules=tree_rules(structure),
                splits=splits,
                note=note,
            )
        )
    return layers


def explain_features(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    width: int = 32,
    depth: int = 2,
    alpha: float = 1e-3,
    holdout: float = 0.3,
    seed: int = 0,
    attributed_splits: int = 3,
) -> Explanation:
    """Train a ReLU MLP head on a content-ordered stratified train split of the pre-logit
    features ``(n, d)`` and explain each hidden layer by a tree over its binary codes.

    Raises:
        InvalidInputError: fewer than 2 classes, a class with one row, non-finite features,
            ``width``/``depth`` below 1.
    """
    x, labels = _checked(features_nd, labels_n)
    if width < 1 or depth < 1:
        raise InvalidInputError("width and depth of the MLP head must be >= 1", field="params")
    keys = content_keys(x, seed=seed)
    train, held_out = content_order_split(keys, labels, holdout=holdout)
    train = train[np.argsort(keys[train], kind="stable")]  # fitting order follows content
    mlp = fit_relu_mlp(x[train], labels[train], width=width, depth=depth, alpha=alpha, seed=seed)
    layers = explain_mlp(mlp, x, labels, train, held_out, seed=seed, attributed_splits=attributed_splits)
    return Explanation(
        layers=layers,
        mlp_accuracy=float((mlp.predict(x[held_out]) == labels[held_out]).mean()),
        train_rows=int(train.size),
        held_out_rows=int(held_out.size),
        classes=int(labels.max() + 1),
        mlp=mlp,
        train=train,
        held_out=held_out,
    )


def leaves_grid(classes: int, *, max_leaves_per_class: float) -> list[int]:
    """Leaf budgets from ``max(2, classes)`` up to ``max_leaves_per_class · classes``, each
    about 1.25 times the last (the last is the top itself)."""
    top = max(2, round(max_leaves_per_class * classes))
    grid = [max(2, classes)]
    while grid[-1] < top:
        grid.append(min(top, max(grid[-1] + 1, round(grid[-1] * 1.25))))
    return grid


def chance_corrected(fidelity: float, tree_guess: np.ndarray, head_guess: np.ndarray) -> float:
    """Cohen's κ of two label vectors with observed agreement ``fidelity``:
    ``(p_o - p_e) / (1 - p_e)``, ``p_e = Σ_k P(tree = k) · P(head = k)``. 0 when the head
    predicts one class only (a one-leaf tree then agrees fully, and that says nothing).

    Example:
        >>> a = np.array([0, 0, 1, 1]); b = np.array([0, 1, 1, 1])
        >>> round(chance_corrected(0.75, a, b), 4)  # p_e = 0.5*0.25 + 0.5*0.75 = 0.5
        0.5
    """
    classes = np.union1d(tree_guess, head_guess)
    p_tree = (tree_guess[:, None] == classes[None, :]).mean(axis=0)
    p_head = (head_guess[:, None] == classes[None, :]).mean(axis=0)
    expected = float(p_tree @ p_head)
    return 0.0 if expected >= 1.0 else (fidelity - expected) / (1.0 - expected)


def fidelity_curves(
    mlp: ReluMLP,
    features_nd: np.ndarray,
    train: np.ndarray,
    held_out: np.ndarray,
    leaves: list[int],
    *,
    seed: int = 0,
) -> tuple[list[list[float]], list[list[float]]]:
    """Per hidden layer, the held-out fidelity and its chance-corrected value (Cohen's κ) of a
    best-first tree over the layer's codes grown to each leaf budget in ``leaves`` (a tree that
    runs out of splits stops smaller): ``(fidelity[layer][budget], kappa[layer][budget])``."""
    predicted = mlp.predict(features_nd)
    head = predicted[held_out]
    fidelity, kappa = [], []
    for code in relu_codes(mlp, features_nd):
        row_f, row_k = [], []
        for budget in leaves:
            tree = fit_code_tree(code[train], predicted[train], seed=seed, max_leaf_nodes=budget)
            guess = tree.predict(code[held_out].astype(np.float64))
            agree = float((guess == head).mean())
            row_f.append(agree)
            row_k.append(chance_corrected(agree, guess, head))
        fidelity.append(row_f)
        kappa.append(row_k)
    return fidelity, kappa


def saliency_maps(
    model: Callable[[Any], Any],
    images_nchw: np.ndarray,
    mlp: ReluMLP,
    layer: int,
    unit: int,
    *,
    size: int = 32,
) -> np.ndarray:
    """Input × gradient saliency ``(s, size, size)`` in [0, 1] of hidden unit ``unit`` of
    layer ``layer`` (0-based) through the backbone ``model`` (images -> pre-logits): per pixel
    ``Σ_c |image · ∂z_u/∂image|``, average-pooled to at most ``size`` pixels a side and divided
    by each map's maximum."""
    import torch

    from zoorank.scores._geometry import check_model_output

    images = torch.from_numpy(np.ascontiguousarray(images_nchw, dtype=np.float32)).requires_grad_(True)
    prelogits = check_model_output(model(images), images.shape[0]).double()
    h = (prelogits - torch.as_tensor(mlp.mean)) / torch.as_tensor(mlp.scale)
    for k in range(layer + 1):
        z = h @ torch.as_tensor(mlp.weights[k]).T + torch.as_tensor(mlp.biases[k])
        h = torch.relu(z)
    z[:, unit].sum().backward()
    assert images.grad is not None
    per_pixel = (images * images.grad).abs().sum(dim=1, keepdim=True)  # (s, 1, h, w)
    maps = pooled(per_pixel.detach(), size)
    peak = maps.reshape(maps.shape[0], -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


def pooled(maps: Any, size: int) -> np.ndarray:
    """``(s, 1, h, w)`` tensor -> ``(s, h', w')`` float64, average-pooled to at most ``size``."""
    import torch

    if max(maps.shape[-2:]) > size:
        target = (min(size, maps.shape[-2]), min(size, maps.shape[-1]))
        maps = torch.nn.functional.adaptive_avg_pool2d(maps, target)
    return maps[:, 0].double().numpy()
