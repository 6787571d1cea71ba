"""Layer-wise decision trees (Mouton & Davel 2022) against answers known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoorank.errors import InvalidInputError
from zoorank.explain import (
    ReluMLP,
    chance_corrected,
    explain_features,
    explain_mlp,
    feature_attribution,
    fidelity_curves,
    leaves_grid,
    relu_codes,
    saliency_maps,
)
from zoorank.scores import ScoreInputs, get_score


def xor_mlp() -> ReluMLP:
    """For inputs within 0.1 of {0, 1}²: layer 1, unit k on iff input k > 0.5 (h in [0.4, 0.6]
    when on); layer 2, u0 = relu(2 h0 - 2 h1 - 0.5) on iff x0 and not x1, u1 likewise; output
    (one unit, binary) u0 + u1 - 0.1 > 0, i.e. x0 XOR x1."""
    return ReluMLP(
        weights=[np.eye(2), np.array([[2.0, -2.0], [-2.0, 2.0]]), np.array([[1.0, 1.0]])],
        biases=[np.array([-0.5, -0.5]), np.array([-0.5, -0.5]), np.array([-0.1])],
    )


def xor_data(rng: np.random.Generator, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    bits = rng.integers(0, 2, size=(n, 2))
    x = bits + rng.uniform(-0.1, 0.1, size=(n, 2))
    return x, (bits[:, 0] != bits[:, 1]).astype(np.int64)


def test_hand_set_xor_mlp_gives_the_known_trees():
    x, y = xor_data(np.random.default_rng(0))
    mlp = xor_mlp()
    assert np.array_equal(mlp.predict(x), y)
    codes = relu_codes(mlp, x)
    assert np.array_equal(codes[0], x > 0.5)  # layer-1 codes known by construction
    rows = np.arange(y.size)
    layer1, layer2 = explain_mlp(mlp, x, y, rows[:140], rows[140:])
    # Layer 1: XOR of two units needs both at depth 2: 4 leaves, each pure, fidelity 1.
    assert (layer1.fidelity, layer1.accuracy, layer1.depth, layer1.leaves) == (1.0, 1.0, 2, 4)
    root = layer1.tree
    first, second = root["unit"], ({"L1.u0", "L1.u1"} - {root["unit"]}).pop()
    for state in ("on", "off"):
        child = root[state]
        assert child["unit"] == second
        # XOR: the class is 1 exactly when the two units differ.
        assert child["on"]["class"] == (1 if state == "off" else 0)
        assert child["off"]["class"] == (1 if state == "on" else 0)
        assert child["on"]["purity"] == child["off"]["purity"] == 1.0
    assert first in layer1.rules and "-> class 1" in layer1.rules
    # Layer 2: class 1 iff u0 or u1 is on: 3 leaves, depth 2.
    assert (layer2.fidelity, layer2.depth, layer2.leaves) == (1.0, 2, 3)


def test_unit_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    mlp = ReluMLP(
        weights=[rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.normal(size=(3, 5))],
        biases=[rng.normal(size=6), rng.normal(size=5), rng.normal(size=3)],
        mean=rng.normal(size=4),
        scale=rng.uniform(0.5, 2.0, size=4),
    )
    x = rng.normal(size=(20, 4))
    eps = 1e-6
    for layer in (0, 1):
        analytic = mlp.unit_gradient(x, layer, 2)
        numeric = np.stack(
            [
                (
                    mlp.pre_activations(x + eps * np.eye(4)[j])[layer][:, 2]
                    - mlp.pre_activations(x)[layer][:, 2]
                )
                / eps
                for j in range(4)
            ],
            axis=1,
        )
        assert np.allclose(analytic, numeric, atol=1e-4)


def one_feature_target(n: int = 300, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, (x[:, 2] > 0).astype(np.int64)


def test_one_separating_feature_drives_the_first_split():
    x, y = one_feature_target()
    found = explain_features(x, y, width=8, depth=2)
    assert found.mlp_accuracy > 0.9
    for layer in found.layers:
        root = layer.splits[0]
        assert root["node"] == 0
        assert root["top_features"][0]["feature"] == 2
        assert root["top_features"][0]["share"] > 0.5
    assert found.layers[0].fidelity > 0.9


def test_feature_attribution_is_input_times_gradient_for_a_linear_unit():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 4))
    mlp = ReluMLP(weights=[w, np.ones((1, 3))], biases=[np.zeros(3), np.zeros(1)], mean=0.5, scale=2.0)
    x = rng.normal(size=(10, 4))
    expected = np.abs((x - 0.5) / 2.0 * w[1]).mean(axis=0)
    assert np.allclose(feature_attribution(mlp, x, 0, 1), expected)


def test_deterministic_and_invariant_to_sample_order():
    x, y = one_feature_target(seed=4)
    first = explain_features(x, y, width=8, depth=2, seed=3)
    again = explain_features(x, y, width=8, depth=2, seed=3)
    order = np.random.default_rng(5).permutation(y.size)
    shuffled = explain_features(x[order], y[order], width=8, depth=2, seed=3)
    for a, b, c in zip(first.layers, again.layers, shuffled.layers, strict=True):
        assert vars(a) == vars(b)
        assert (a.fidelity, a.accuracy, a.depth, a.leaves, a.rules) == (
            c.fidelity,
            c.accuracy,
            c.depth,
            c.leaves,
            c.rules,
        )
    assert np.array_equal(np.sort(order[shuffled.held_out]), first.held_out)


def test_fidelity_curves_and_grid():
    assert leaves_grid(10, max_leaves_per_class=2) == [10, 12, 15, 19, 20]
    assert leaves_grid(2, max_leaves_per_class=1) == [2]
    x, y = xor_data(np.random.default_rng(6))
    rows = np.arange(y.size)
    curves, kappa = fidelity_curves(xor_mlp(), x, rows[:140], rows[140:], [2, 3, 4])
    # Layer 1 needs all 4 leaves for XOR; with 2 or 3 it must misclassify some held-out rows.
    assert curves[0][2] == 1.0 and max(curves[0][:2]) < 1.0
    assert curves[1][1] == 1.0  # layer 2: u0 or u1, 3 leaves
    assert kappa[0][2] == kappa[1][1] == 1.0 and max(kappa[0][:2]) < max(curves[0][:2])


def test_chance_corrected_agreement_by_hand():
    # p_o = 0.8; p_tree = (0.4, 0.6), p_head = (0.6, 0.4): p_e = 0.24 + 0.24 = 0.48.
    tree = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    head = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    assert chance_corrected(0.8, tree, head) == pytest.approx((0.8 - 0.48) / 0.52)
    constant = np.zeros(10, dtype=int)
    assert chance_corrected(1.0, constant, constant) == 0.0


def test_a_layer_that_is_always_off_is_reported_not_a_crash():
    x, y = xor_data(np.random.default_rng(7))
    dead = ReluMLP(
        weights=[np.eye(2), np.ones((1, 2))], biases=[np.array([-100.0, -100.0]), np.array([-0.1])]
    )
    rows = np.arange(y.size)
    (layer,) = explain_mlp(dead, x, y, rows[:140], rows[140:])
    assert layer.constant_units == 2 and "always on or always off" in layer.note
    assert layer.leaves == 1 and layer.splits == []


@pytest.mark.parametrize(
    ("features", "labels", "field", "message"),
    [
        (np.ones((10, 3)), np.zeros(10), "labels", "at least 2 classes"),
        (np.full((10, 3), np.nan), np.repeat([0, 1], 5), "features", "non-finite"),
        (np.ones((10, 3)), np.r_[np.zeros(9), 1], "labels", "at least 2 samples"),
        (np.ones(10), np.repeat([0, 1], 5), "features", "2-D"),
    ],
)
def test_bad_input_names_the_problem(features, labels, field, message):
    with pytest.raises(InvalidInputError, match=message) as caught:
        explain_features(features, labels)
    assert caught.value.field == field


def test_score_needs_pre_logit_features():
    with pytest.raises(InvalidInputError, match="needs features"):
        get_score("layer_tree_fidelity")(ScoreInputs(labels=np.repeat([0, 1], 10)))


class _QuadrantBackbone(torch.nn.Module):
    """Pre-logit k is the mean of quadrant k of the 8x8 image (0: top left)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        q = images[:, 0].unfold(1, 4, 4).unfold(2, 4, 4)  # (n, 2, 2, 4, 4)
        return q.mean(dim=(3, 4)).reshape(images.shape[0], 4)


def test_saliency_through_the_backbone_points_at_the_separating_region():
    rng = np.random.default_rng(8)
    y = np.repeat([0, 1], 60)
    images = rng.uniform(0.0, 1.0, size=(120, 1, 8, 8)).astype(np.float32)
    images[:, 0, :4, :4] += np.where(y == 1, 2.0, -2.0)[:, None, None]
    backbone = _QuadrantBackbone()
    with torch.no_grad():
        features = backbone(torch.from_numpy(images)).double().numpy()
    output = get_score("layer_tree_fidelity")(
        ScoreInputs(labels=y, features=features, images=images, model=backbone),
        width=8,
        saliency_samples=2,
    )
    assert output.value > 0.9
    assert output.details["layers"][0]["splits"][0]["top_features"][0]["feature"] == 0
    group = output.details["saliency"][0]
    assert len(group["samples"]) == 2 and {s["label"] for s in group["samples"]} == {0, 1}
    for sample in group["samples"]:
        heat = np.asarray(sample["map"])
        assert heat.shape == (8, 8) and heat.max() == 1.0
        # the corner, a quarter of the image, carries most of the saliency: input x gradient
        # also marks the other quadrants the head happens to weigh, far less
        quadrants = heat.reshape(2, 4, 2, 4).sum(axis=(1, 3)).ravel()
        assert quadrants[0] > 0.5 * heat.sum() and quadrants[0] > 2 * quadrants[1:].max()


def test_saliency_is_input_times_gradient():
    rng = np.random.default_rng(9)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)).double()
    images = rng.normal(size=(2, 2, 4, 4))
    mlp = ReluMLP(
        weights=[rng.normal(size=(5, 3)), rng.normal(size=(1, 5))],
        biases=[np.zeros(5), np.zeros(1)],
        mean=rng.normal(size=3),
        scale=np.array([1.0, 2.0, 0.5]),
    )
    maps = saliency_maps(lambda t: linear(t.double()), images, mlp, 0, 4, size=4)
    # z = w_u . ((A vec(img) + c - mean) / scale) + b: d z / d img = A^T (w_u / scale)
    a = linear[1].weight.detach().numpy()
    grad = (a.T @ (mlp.weights[0][4] / mlp.scale)).reshape(2, 4, 4)
    expected = np.abs(images * grad[None]).sum(axis=1)
    expected /= expected.reshape(2, -1).max(axis=1)[:, None, None]
    assert np.allclose(maps, expected)
