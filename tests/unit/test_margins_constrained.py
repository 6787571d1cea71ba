"""Constrained input margin (Mouton et al. 2024) on linear models, where the answer is analytic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores._geometry import fit_linear_probe
from zoorank.scores.constrained_margin import constrained_margins, principal_directions
from zoorank.scores.margins import probe_margins

D = 16  # images (1, 4, 4)


def _linear_classifier(w: np.ndarray, b: np.ndarray):
    wt, bt = torch.tensor(w, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    return lambda x: x.flatten(1) @ wt.T + bt


def _points(rng: np.random.Generator, s: int) -> np.ndarray:
    flat = np.zeros((s, D), dtype=np.float32)
    flat[:, :4] = rng.normal(size=(s, 4))
    return flat.reshape(s, 1, 4, 4)


def test_equals_hyperplane_distance_when_the_normal_is_in_the_subspace() -> None:
    rng = np.random.default_rng(0)
    w = np.zeros((2, D))
    w[1, :4] = [1.5, -0.5, 0.25, 1.0]  # the normal lives in the first 4 pixels
    b = np.array([0.0, 0.3])
    images = _points(rng, 20)
    flat = images.reshape(20, D).astype(np.float64)
    g = flat @ w[1] + b[1]  # f_1 - f_0
    labels = (g > 0).astype(np.int64)
    basis = np.eye(D, dtype=np.float32)[:, :6]  # span of pixels 0..5 contains the normal
    out = constrained_margins(_linear_classifier(w, b), images, labels, basis)
    np.testing.assert_allclose(out.distances, np.abs(g) / np.linalg.norm(w[1]), rtol=1e-4)
    assert out.crossed.all() and (out.iterations == 1).all()


def test_larger_when_the_normal_leaves_the_subspace() -> None:
    rng = np.random.default_rng(1)
    w = np.zeros((2, D))
    w[1, :4] = [1.5, -0.5, 0.25, 1.0]
    w[1, 10] = 2.0  # a direction the data (and the PCA basis) never varies along
    b = np.array([0.0, 0.3])
    images = _points(rng, 20)
    g = images.reshape(20, D).astype(np.float64) @ w[1] + b[1]
    labels = (g > 0).astype(np.int64)
    basis = np.eye(D, dtype=np.float32)[:, :4]
    out = constrained_margins(_linear_classifier(w, b), images, labels, basis)
    analytic = np.abs(g) / np.linalg.norm(w[1])
    constrained = np.abs(g) / np.linalg.norm(w[1, :4])  # |g| / ||Vᵀn||
    np.testing.assert_allclose(out.distances, constrained, rtol=1e-4)
    assert (out.distances > analytic * 1.4).all()  # ratio sqrt(7.3125 / 3.3125)


def test_misclassified_samples_get_negative_margins() -> None:
    w = np.zeros((2, D))
    w[1, 0] = 2.0
    images = np.zeros((2, 1, 4, 4), dtype=np.float32)
    images[:, 0, 0, 0] = [1.0, 3.0]  # both on class 1's side
    out = constrained_margins(
        _linear_classifier(w, np.zeros(2)), images, np.array([1, 0]), np.eye(D, dtype=np.float32)
    )
    np.testing.assert_allclose(out.distances, [1.0, -3.0], rtol=1e-5)


def test_a_gradient_outside_the_subspace_never_crosses() -> None:
    w = np.zeros((2, D))
    w[1, 10] = 1.0
    images = np.zeros((3, 1, 4, 4), dtype=np.float32)
    images[:, 0, 2, 2] = 1.0  # pixel 10
    basis = np.eye(D, dtype=np.float32)[:, :4]
    out = constrained_margins(_linear_classifier(w, np.zeros(2)), images, np.ones(3, int), basis)
    assert not out.crossed.any()


def test_principal_directions_span_the_varying_pixels_and_follow_the_variance_share() -> None:
    rng = np.random.default_rng(2)
    rows = np.zeros((200, D))
    rows[:, 3] = 10.0 * rng.normal(size=200)
    rows[:, 7] = 3.0 * rng.normal(size=200)
    rows[:, 9] = 0.01 * rng.normal(size=200)
    one = principal_directions(rows, variance=0.8)
    two = principal_directions(rows, variance=0.99)
    assert one.shape == (D, 1) and two.shape == (D, 2)
    projector = two.astype(np.float64) @ two.T
    expected = np.zeros((D, D))
    expected[3, 3] = expected[7, 7] = 1.0
    np.testing.assert_allclose(projector, expected, atol=1e-3)
    np.testing.assert_allclose(two.T @ two, np.eye(2), atol=1e-5)
    assert principal_directions(rows, components=3).shape == (D, 3)


def _linear_backbone_data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    images = _points(rng, n)
    images[:, 0, 0, 0] += np.where(labels == 1, 2.0, -2.0).astype(np.float32)
    return images, labels


def test_registered_score_on_a_linear_backbone_matches_the_probe_geometry() -> None:
    images, labels = _linear_backbone_data()
    flat = images.reshape(len(labels), D).astype(np.float64)

    def backbone(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    score = get_score("constrained_margin")
    out = score(ScoreInputs(labels=labels, images=images, model=backbone), normalise=False)
    # 60 samples < the default subset of 100: every row is measured and the probe fits on all.
    probe = fit_linear_probe(flat, labels)
    margins = probe_margins(probe, flat, labels)
    assert out.value == pytest.approx(np.median(margins), rel=1e-3)
    assert out.details["not_crossed"] == 0
    assert out.details["iterations_mean"] == pytest.approx(1.0)
    normalised = score(ScoreInputs(labels=labels, images=images, model=backbone)).value
    assert normalised == pytest.approx(out.value / np.sqrt(flat.var(axis=0).sum()), rel=1e-3)


def test_registered_score_is_larger_when_the_backbone_reads_off_manifold_pixels() -> None:
    images, labels = _linear_backbone_data()

    def on_manifold(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :4]

    def mixes_in_pixel_10(x: torch.Tensor) -> torch.Tensor:  # pixel 10 is 0 in every image
        flat = x.flatten(1)
        return torch.cat([flat[:, :1] + 3.0 * flat[:, 10:11], flat[:, 1:4]], dim=1)

    score = get_score("constrained_margin")
    a = score(ScoreInputs(labels=labels, images=images, model=on_manifold), normalise=False)
    b = score(ScoreInputs(labels=labels, images=images, model=mixes_in_pixel_10), normalise=False)
    # Same features on the data, same probe, same constrained margin...
    assert b.value == pytest.approx(a.value, rel=1e-3)
    # ...while the unconstrained distance of the second model is smaller: its normal has a
    # pixel-10 component three times its pixel-0 component.
    flat = images.reshape(len(labels), D).astype(np.float64)
    probe = fit_linear_probe(flat[:, :4], labels)
    n = probe.weights[1] - probe.weights[0]
    full_normal = np.r_[n, np.zeros(D - 4)]
    full_normal[10] = 3.0 * n[0]
    g = (flat[:, :4] @ n) + (probe.bias[1] - probe.bias[0])
    unconstrained = np.median(np.abs(g) / np.linalg.norm(full_normal))
    assert b.value > 1.5 * unconstrained


def test_reports_cost_and_is_deterministic() -> None:
    images, labels = _linear_backbone_data(n=40)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 8),
    ).eval()
    score = get_score("constrained_margin")
    inputs = ScoreInputs(labels=labels, images=images, model=net, seed=3)
    first, second = score(inputs, samples=10), score(inputs, samples=10)
    assert first.value == second.value and np.isfinite(first.value)
    assert first.details["samples"] == 10
    for key in ("iterations_total", "seconds", "not_crossed", "pca_components"):
        assert key in first.details


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images_are_refused(bad: float) -> None:
    images, labels = _linear_backbone_data()
    images[3, 0, 1, 1] = bad
    with pytest.raises(InvalidInputError, match="non-finite"):
        get_score("constrained_margin")(
            ScoreInputs(labels=labels, images=images, model=lambda x: x.flatten(1))
        )


def test_a_model_returning_nan_is_refused() -> None:
    images, labels = _linear_backbone_data()
    with pytest.raises(InvalidInputError, match="non-finite"):
        get_score("constrained_margin")(
            ScoreInputs(labels=labels, images=images, model=lambda x: x.flatten(1) * np.nan)
        )


def test_subset_survives_shuffles_and_class_renaming() -> None:
    images, labels = _linear_backbone_data(n=40)
    labels = np.arange(40) % 3
    score = get_score("constrained_margin")

    def backbone(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1)[:, :4])

    base = score(ScoreInputs(labels=labels, images=images, model=backbone), samples=10).value
    perm = np.random.default_rng(0).permutation(40)
    moved = ScoreInputs(labels=(labels[perm] + 1) % 3, images=images[perm], model=backbone)
    assert score(moved, samples=10).value == pytest.approx(base, rel=1e-6)
