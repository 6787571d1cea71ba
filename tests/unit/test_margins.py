"""Hidden margin (Jiang et al. 2019) against answers computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores._geometry import LinearProbe, fit_linear_probe
from zoorank.scores.margins import (
    hidden_margins,
    nearest_other_class_distance,
    probe_margins,
    total_feature_scale,
)


def _two_gaussians(a: float, *, n_per_class: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Classes at ±a on axis 0 (noise 1e-3), one class-independent axis of variance 1, and
    three near-constant axes: the margin is ≈ a, the normaliser sqrt(a² + 1 + tiny)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    n = y.size
    x = np.c_[
        np.where(y == 1, a, -a) + 1e-3 * rng.normal(size=n),
        rng.normal(size=n),
        1e-3 * rng.normal(size=(n, 3)),
    ]
    return x, y


def test_probe_margin_is_the_distance_to_the_hyperplane() -> None:
    # f_1 - f_0 = 2 x_0 - 2: boundary x_0 = 1, ||w_1 - w_0|| = 2.
    probe = LinearProbe(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([0.0, -2.0]))
    x = np.array([[3.0, 5.0], [0.0, -7.0], [2.0, 0.0]])
    got = probe_margins(probe, x, np.array([1, 0, 0]))
    np.testing.assert_allclose(got, [2.0, 1.0, -1.0])  # last: class 0 but on class 1's side


def test_runner_up_and_nearest_boundary_differ_as_the_geometry_says() -> None:
    # Class 0 at the origin side; class 1's boundary is far in score but steep, class 2's close.
    probe = LinearProbe(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 1.0]]), np.array([0.0, -30.0, -2.0]))
    x = np.array([[0.0, 0.0]])  # f = (0, -30, -2): runner-up is class 2
    runner_up = probe_margins(probe, x, np.array([0]), pair="runner_up")
    nearest = probe_margins(probe, x, np.array([0]), pair="nearest")
    np.testing.assert_allclose(runner_up, [2.0])  # (0 - -2) / ||(0,1)||
    np.testing.assert_allclose(nearest, [2.0])  # class 1: 30 / 10 = 3 > 2
    x2 = np.array([[2.5, 0.0]])  # f = (0, -5, -2): runner-up 2 at distance 2, class 1 at 0.5
    np.testing.assert_allclose(probe_margins(probe, x2, np.array([0])), [2.0])
    np.testing.assert_allclose(probe_margins(probe, x2, np.array([0]), pair="nearest"), [0.5])


def test_feature_scale_is_root_of_summed_variances() -> None:
    x = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]])
    assert total_feature_scale(x) == pytest.approx(np.sqrt(np.var([1, 3, 5]) + np.var([2, 2, 8])))


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 4.0])
def test_two_gaussians_margin_is_a_over_total_std(a: float) -> None:
    x, y = _two_gaussians(a)
    expected = a / np.sqrt(x.var(axis=0).sum())  # the boundary sits at x_0 = 0 by symmetry
    out = get_score("hidden_margin")(ScoreInputs(labels=y, features=x))
    assert out.value == pytest.approx(expected, rel=0.02)
    assert out.details["negative_fraction"] == 0.0
    assert out.details["q1"] <= out.value <= out.details["q3"]


def test_margin_grows_with_separation() -> None:
    values = [
        get_score("hidden_margin")(ScoreInputs(labels=y, features=x)).value
        for x, y in (_two_gaussians(a) for a in (0.25, 0.5, 1.0, 2.0, 4.0))
    ]
    assert all(lo < hi for lo, hi in itertools.pairwise(values))


def test_invariant_to_scale_order_and_class_names() -> None:
    x, y = _two_gaussians(1.0)
    score = get_score("hidden_margin")
    base = score(ScoreInputs(labels=y, features=x)).value
    perm = np.random.default_rng(3).permutation(y.size)
    assert score(ScoreInputs(labels=y[perm], features=x[perm])).value == pytest.approx(base)
    # A rescale changes the rows' bytes, hence the seeded split; the value moves only by that.
    assert score(ScoreInputs(labels=y, features=10.0 * x + 3.0)).value == pytest.approx(base, rel=0.01)
    assert score(ScoreInputs(labels=np.where(y == 1, 7, 4), features=x)).value == pytest.approx(base)


def test_random_labels_give_small_and_often_negative_margins() -> None:
    x, y = _two_gaussians(2.0)
    shuffled = np.random.default_rng(1).permutation(y)
    out = get_score("hidden_margin")(ScoreInputs(labels=shuffled, features=x))
    separable = get_score("hidden_margin")(ScoreInputs(labels=y, features=x))
    assert out.value < separable.value
    assert 0.2 < out.details["negative_fraction"] < 0.8


def test_split_keeps_every_class_on_both_sides() -> None:
    x, y = _two_gaussians(1.0, n_per_class=2)
    result = hidden_margins(x, y, holdout=0.5)
    assert sorted(y[result.held_out].tolist()) == [0, 1]


def test_nearest_other_class_distance_by_hand() -> None:
    pool = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [10.0, 0.0]])
    labels = np.array([0, 1, 0, 2])
    got = nearest_other_class_distance(pool, labels, pool, labels)
    np.testing.assert_allclose(got, [5.0, np.sqrt(20.0), np.sqrt(20.0), np.sqrt(65.0)])


def test_nuances_are_capped_and_aligned() -> None:
    x, y = _two_gaussians(1.0, n_per_class=200)
    out = get_score("hidden_margin")(ScoreInputs(labels=y, features=x), nuance_samples=50)
    nuances = out.details["nuances"]
    assert len(nuances["sample"]) == 50
    assert len(nuances["margin"]) == len(nuances["nearest_other_class_distance"]) == 50
    rows = np.asarray(nuances["sample"])
    scale = total_feature_scale(x)
    expected = nearest_other_class_distance(x[rows], y[rows], x, y) / scale
    np.testing.assert_allclose(nuances["nearest_other_class_distance"], expected, atol=1e-5)
    assert np.all(np.asarray(nuances["label"]) == y[rows])


def test_probe_fit_keeps_geometry_of_near_constant_axes() -> None:
    # Per-feature standardisation would blow the noise axis up and tilt the boundary.
    x, y = _two_gaussians(3.0)
    probe = fit_linear_probe(x, y)
    normal = probe.weights[1] - probe.weights[0]
    assert abs(normal[0]) / np.linalg.norm(normal) > 0.99


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_are_refused(bad: float) -> None:
    x, y = _two_gaussians(1.0)
    x[5, 2] = bad
    with pytest.raises(InvalidInputError, match="non-finite"):
        get_score("hidden_margin")(ScoreInputs(labels=y, features=x))


def test_constant_features_and_singleton_classes_are_refused() -> None:
    y = np.repeat([0, 1], 5)
    with pytest.raises(InvalidInputError, match="constant"):
        hidden_margins(np.ones((10, 3)), y)
    with pytest.raises(InvalidInputError, match="at least 2"):
        hidden_margins(np.random.default_rng(0).normal(size=(6, 2)), np.array([0, 0, 0, 0, 0, 1]))
    with pytest.raises(InvalidInputError, match="pair"):
        get_score("hidden_margin")(
            ScoreInputs(labels=y, features=np.random.default_rng(0).normal(size=(10, 2))),
            pair="furthest",
        )
