"""Betti decay scores: θ against a hand-solved ridge fit, Ω on maps whose Betti numbers are
known by construction, invariances, and refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score, list_scores
from zoorank.scores.betti import betti_decay_rate


def closed_form_theta(omega: np.ndarray, x: np.ndarray) -> float:
    """θ by solving the ridge normal equations by hand.

    sklearn's Ridge centres the columns and y and does not penalise the intercept; the constant
    column of PolynomialFeatures is 0 after centring, so its coefficient is 0 and the fit
    reduces to ``(XcᵀXc + αI) c = Xcᵀ yc`` on the columns (x, x², x³).
    """
    y = omega / np.linalg.norm(omega)
    design = np.stack([x, x**2, x**3], axis=1)
    centred = design - design.mean(axis=0)
    c = np.linalg.solve(centred.T @ centred + 1e-3 * np.eye(3), centred.T @ (y - y.mean()))
    return float(c[0] + 0.5 * c[1] + 0.5 * c[2])


def blobs_volume(count: int, length: int = 12) -> np.ndarray:
    """A (3, 3, 2·length+1) volume of 1s with ``count`` isolated 0-voxels: at η = 0.5 its
    Betti numbers are (count, 0, 0) by construction."""
    volume = np.ones((3, 3, 2 * length + 1), dtype=np.float32)
    volume[1, 1, 0 : 2 * count : 2] = 0.0
    return volume


def blob_taps(counts_per_image: list[list[int]]) -> dict[str, np.ndarray]:
    """Taps ``t0..t{L-1}``: image i at tap l has ``counts_per_image[i][l]`` blobs."""
    n_taps = len(counts_per_image[0])
    return {
        f"t{layer}": np.stack([blobs_volume(counts[layer]) for counts in counts_per_image])
        for layer in range(n_taps)
    }


def smooth_taps(seed: int, m: int, n_taps: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    taps = {}
    for layer in range(n_taps):
        maps = ndimage.gaussian_filter(rng.normal(size=(m, 4, 10, 10)), (0, 0.8, 1.0, 1.0))
        taps[f"t{layer}"] = (maps * (1.0 + layer)).astype(np.float32)
    return taps


# --- θ against a closed form -----------------------------------------------------------------


@pytest.mark.parametrize(
    "omega",
    [
        np.array([40.0, 31, 25, 20, 14, 11, 9, 8, 6, 5, 5]),  # strictly decaying, L = 11
        np.exp(-np.arange(8) / 2.0),
        np.array([3.0, 1, 4, 1, 5, 9, 2, 6]),
        np.ones(11),  # flat
    ],
)
def test_theta_matches_hand_solved_ridge(omega: np.ndarray) -> None:
    x = np.arange(1, omega.size + 1, dtype=float)
    theta, _ = betti_decay_rate(omega)
    np.testing.assert_allclose(theta, closed_form_theta(omega, x), rtol=1e-7, atol=1e-10)
    unit = np.linspace(0.0, 1.0, omega.size)
    theta_unit, _ = betti_decay_rate(omega, depth=unit)
    np.testing.assert_allclose(theta_unit, closed_form_theta(omega, unit), rtol=1e-7, atol=1e-10)


def test_flat_profile_has_theta_zero_and_never_ranks_above_decay() -> None:
    flat, coefficients = betti_decay_rate(np.full(11, 7.0))
    assert flat == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(coefficients, 0.0, atol=1e-12)
    for decaying in (12.0 - np.arange(1, 12), np.exp(-np.arange(11) / 3.0), 1 / np.arange(1, 12)):
        assert betti_decay_rate(decaying)[0] < flat  # lower θ ranks higher
        assert betti_decay_rate(decaying, depth=np.linspace(0, 1, 11))[0] < flat


# --- the score on maps with known Betti numbers ----------------------------------------------


def test_omega_is_the_class_balanced_mean_of_known_betti_sums() -> None:
    # Class 0: three images with 6,5,4,3,2 blobs; class 1: one image with 2,2,2,2,2.
    counts = [[6, 5, 4, 3, 2]] * 3 + [[2, 2, 2, 2, 2]]
    inputs = ScoreInputs(labels=np.array([0, 0, 0, 1]), taps=blob_taps(counts))
    out = get_score("betti_decay")(inputs)
    omega = np.array([4.0, 3.5, 3.0, 2.5, 2.0])  # mean of class means, not of images
    assert [tap["omega"] for tap in out.details["taps"]] == omega.tolist()
    assert out.details["taps"][0]["betti_mean"] == [4.0, 0.0, 0.0]
    assert out.value == pytest.approx(closed_form_theta(omega, np.arange(1.0, 6.0)), rel=1e-7)
    norm = get_score("betti_decay_norm")(inputs)
    assert norm.details["taps"][-1]["depth"] == 1.0


def test_decaying_taps_rank_above_flat_taps() -> None:
    decaying = ScoreInputs(labels=np.array([0, 1]), taps=blob_taps([[8, 6, 4, 3, 2, 1]] * 2))
    flat = ScoreInputs(labels=np.array([0, 1]), taps=blob_taps([[4, 4, 4, 4, 4, 4]] * 2))
    spec = get_score("betti_decay")
    assert spec.direction == "lower"
    assert spec(decaying).value < spec(flat).value
    assert spec(flat).value == pytest.approx(0.0, abs=1e-12)


def test_tap_rows_select_labels_and_images_per_class_caps_them() -> None:
    labels = np.array([5, 5, 5, 9, 9, 9, 9])  # only rows 1, 2, 4, 5, 6 have taps
    taps = smooth_taps(0, m=5)
    inputs = ScoreInputs(labels=labels, taps=taps, tap_rows=np.array([1, 2, 4, 5, 6]))
    out = get_score("betti_decay")(inputs, images_per_class=2)
    assert out.details["images_used"] == 4
    assert out.details["classes"] == 2


def test_curve_holds_the_authors_grid() -> None:
    """Stored by default; each point is the class-balanced mean Betti sum that gudhi's
    persistence intervals give at that η (closed rule), computed here image by image."""
    from zoorank.topology import betti_from_intervals, persistence_intervals

    labels = np.array([0, 0, 0, 1])  # unequal classes: the mean of class means, not of images
    taps = smooth_taps(1, m=4)
    out = get_score("betti_decay")(ScoreInputs(labels=labels, taps=taps))
    grid = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert out.details["curve_thresholds"] == grid
    for tap in out.details["taps"]:
        maps = taps[tap["name"]]
        intervals = [persistence_intervals(maps[i]) for i in range(4)]
        sums = np.array([[betti_from_intervals(iv, eta).sum() for eta in grid] for iv in intervals])
        expected = (sums[:3].mean(axis=0) + sums[3]) / 2
        assert tap["curve"] == pytest.approx(expected.tolist(), abs=1e-12)
        assert tap["curve"][2] == pytest.approx(tap["omega"])  # η = 0.5 is on the grid


# --- invariances -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["betti_decay", "betti_decay_norm", "betti_auc"])
def test_invariant_to_sample_order_and_class_names(name: str) -> None:
    taps = smooth_taps(2, m=9)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    spec = get_score(name)
    base = spec(ScoreInputs(labels=labels, taps=taps), images_per_class=2)
    order = np.random.default_rng(0).permutation(9)
    shuffled = ScoreInputs(labels=(labels[order] + 1) * 10, taps={k: v[order] for k, v in taps.items()})
    again = spec(shuffled, images_per_class=2)
    assert np.isfinite(base.value)
    assert again.value == pytest.approx(base.value, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", ["betti_decay_norm", "betti_auc"])
def test_normalised_variants_ignore_activation_scale(name: str) -> None:
    taps = smooth_taps(3, m=4)
    labels = np.array([0, 0, 1, 1])
    scaled = {k: v * np.float32(2.0 ** (i - 2)) for i, (k, v) in enumerate(taps.items())}
    spec = get_score(name)
    assert spec(ScoreInputs(labels=labels, taps=scaled)).value == pytest.approx(
        spec(ScoreInputs(labels=labels, taps=taps)).value, rel=1e-12
    )
    raw = get_score("betti_decay")
    assert (
        raw(ScoreInputs(labels=labels, taps=scaled)).value != raw(ScoreInputs(labels=labels, taps=taps)).value
    )  # the paper's raw η is not scale-free


def test_max_taps_keeps_first_and_last() -> None:
    inputs = ScoreInputs(labels=np.array([0, 1]), taps=smooth_taps(4, m=2, n_taps=9))
    out = get_score("betti_decay")(inputs, max_taps=4)
    names = [tap["name"] for tap in out.details["taps"]]
    assert names[0] == "t0" and names[-1] == "t8" and len(names) == 4
    assert [tap["depth"] for tap in out.details["taps"]] == [1.0, 4.0, 6.0, 9.0]


def test_registered_with_metadata() -> None:
    assert list_scores("betti*") == [
        "betti_auc",
        "betti_decay",
        "betti_decay_norm",
        "betti_slope",
        "betti_slope_norm",
    ]
    for name in list_scores("betti*"):
        spec = get_score(name)
        assert spec.needs == frozenset({"taps"})
        assert spec.direction == "lower"
        assert "2311.04592" in spec.paper


# --- bad input -------------------------------------------------------------------------------


def _bad(taps: dict[str, np.ndarray], labels: np.ndarray, match: str, **params: object) -> None:
    with pytest.raises(InvalidInputError, match=match):
        get_score("betti_decay")(ScoreInputs(labels=labels, taps=taps), **params)


def test_refuses_non_finite_taps() -> None:
    taps = smooth_taps(5, m=2)
    taps["t3"] = taps["t3"].copy()
    taps["t3"][1, 0, 0, 0] = np.nan
    _bad(taps, np.array([0, 1]), "t3.*non-finite")
    taps["t3"][1, 0, 0, 0] = np.inf
    _bad(taps, np.array([0, 1]), "t3.*non-finite")
    # a NaN in an image the score would not pick is refused too (it was scored, theta 0.16)
    many = smooth_taps(5, m=6)
    many["t2"] = many["t2"].copy()
    many["t2"][4, 0, 0, 0] = np.nan  # rows 0 and 5 are the ones picked
    _bad(many, np.array([0, 0, 0, 1, 1, 1]), "t2.*non-finite", images_per_class=1)


def test_refuses_too_few_taps_one_class_and_vectors() -> None:
    taps = smooth_taps(6, m=2, n_taps=3)
    _bad(taps, np.array([0, 1]), "at least 4 layer taps")
    _bad(smooth_taps(6, m=2), np.array([1, 1]), "at least 2 classes")
    vectors = {f"t{i}": np.ones((2, 16), np.float32) for i in range(5)}
    _bad(vectors, np.array([0, 1]), r"\(m, c, h, w\)")
    _bad(smooth_taps(6, m=2), np.array([0, 1]), "max_taps", max_taps=3)
    _bad(smooth_taps(6, m=2), np.array([0, 1, 1]), "labels")  # 2 tapped images, 3 labels


def test_refuses_all_empty_sublevel_sets() -> None:
    taps = {f"t{i}": np.ones((2, 2, 3, 3), np.float32) for i in range(4)}
    _bad(taps, np.array([0, 1]), "raise eta", eta=0.5)


def test_betti_slope_closed_form_and_sign():
    """OLS slope by hand: Ω = (4, 3, 2, 1) over x = (0, 1/3, 2/3, 1); y = Ω/√30 falls by 1/√30
    per step of 1/3, so the slope is -3/√30. A flat profile has slope 0; a rising one > 0."""
    from zoorank.scores.betti import betti_decay_slope

    x = np.linspace(0, 1, 4)
    assert betti_decay_slope(np.array([4.0, 3, 2, 1]), depth=x) == pytest.approx(-3 / np.sqrt(30))
    assert betti_decay_slope(np.ones(4), depth=x) == pytest.approx(0.0, abs=1e-15)
    assert betti_decay_slope(np.array([1.0, 2, 3, 4]), depth=x) == pytest.approx(3 / np.sqrt(30))
    # scale-free: multiplying Ω by a constant (another activation scale) changes nothing
    assert betti_decay_slope(7 * np.array([5.0, 1, 3, 2]), depth=x) == pytest.approx(
        betti_decay_slope(np.array([5.0, 1, 3, 2]), depth=x)
    )
    with pytest.raises(InvalidInputError):
        betti_decay_slope(np.zeros(4), depth=x)


@pytest.mark.slow
def test_betti_slope_orders_pretrained_above_random_twins(tmp_path):
    """Known answer: ImageNet features transfer to digits better than random-init ones. With its
    defaults (taps at 64 px, whatever the job's resolution: here 32 px) betti_slope puts each of
    the four offline models above its random twin; measured margins 0.23-0.45
    (benchmarks/results/betti_invariance_slope.md). The paper's θ does not (0/4 there)."""
    from zoorank.rank import RankOptions, rank

    pretrained = [
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite1",
        "tf_efficientnet_lite2",
        "mobilenetv2_100",
    ]
    result = rank(
        "builtin:digits",
        [*pretrained, *[f"{m}@random" for m in pretrained]],
        ["betti_slope"],
        RankOptions(samples_per_class=5, input_size=32, tap_images_per_class=5),
        cache_dir=tmp_path,
    )
    slope = {r.model: r.scores["betti_slope"].value for r in result.results}
    for model in pretrained:
        assert slope[model] < slope[f"{model}@random"] - 0.1, slope


# --- the variants on maps whose Betti numbers are known at every threshold --------------------
#
# Each image's tap is a line of isolated points (values v) between separators of a value S above
# every v: below S the sublevel set at η is the points with v ≤ η, each its own component, so the
# Betti sum is #{v ≤ η} (β1 = β2 = 0 on a line). The expected values below take the per-tap
# thresholds from numpy's quantile of the pooled activations, count points, and fit by hand:
# no topology code, and none of zoorank's.

LINE_LABELS = np.array([0, 0, 0, 1, 1])  # unequal classes: the mean of class means matters
LINE_TAPS = 6


def line_taps(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Taps of 5 images x 6 taps, 7 distinct point values each, every tap at its own scale and
    offset (a·v + b, a > 0). Returns the taps, the point values ``(images, taps, 7)`` and the
    separator value of each tap ``(taps,)``."""
    rng = np.random.default_rng(seed)
    raw = rng.permutation(5 * LINE_TAPS * 7).reshape(5, LINE_TAPS, 7).astype(np.float64)
    scale = rng.uniform(0.5, 4.0, LINE_TAPS)
    offset = rng.uniform(-50.0, 50.0, LINE_TAPS)
    points = scale[None, :, None] * raw + offset[None, :, None]
    separator = scale * raw.max() * 2 + offset
    taps = {}
    for tap in range(LINE_TAPS):
        line = np.full((5, 1, 1, 13), separator[tap])
        line[:, 0, 0, ::2] = points[:, tap]
        taps[f"t{tap}"] = line
    return taps, points, separator


def known_omega(points: np.ndarray, eta: np.ndarray, separator: np.ndarray) -> np.ndarray:
    """Class-balanced mean of #{v ≤ η_l} per tap (η below the separators by construction)."""
    assert (eta < separator).all()
    counts = (points <= eta[None, :, None]).sum(axis=2)  # (images, taps)
    classes = [counts[c == LINE_LABELS].mean(axis=0) for c in np.unique(LINE_LABELS)]
    return np.mean(classes, axis=0)


def pooled_quantile(taps: dict[str, np.ndarray], q: float) -> np.ndarray:
    return np.array([np.quantile(maps.ravel(), q) for maps in taps.values()])


DEPTH = np.arange(LINE_TAPS) / (LINE_TAPS - 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_betti_decay_norm_known_answer(seed: int) -> None:
    taps, points, separator = line_taps(seed)
    omega = known_omega(points, pooled_quantile(taps, 0.3), separator)
    out = get_score("betti_decay_norm")(ScoreInputs(labels=LINE_LABELS, taps=taps), quantile=0.3)
    assert [tap["omega"] for tap in out.details["taps"]] == pytest.approx(omega.tolist(), abs=1e-12)
    assert out.value == pytest.approx(closed_form_theta(omega, DEPTH), rel=1e-7, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_betti_slope_and_slope_norm_known_answer(seed: int) -> None:
    """The least-squares slope of Ω/‖Ω‖ over depth, by numpy's polyfit: at a per-tap quantile
    (betti_slope_norm) and at one raw threshold for every tap (betti_slope)."""
    taps, points, separator = line_taps(seed)
    inputs = ScoreInputs(labels=LINE_LABELS, taps=taps)
    omega = known_omega(points, pooled_quantile(taps, 0.4), separator)
    expected = np.polyfit(DEPTH, omega / np.linalg.norm(omega), 1)[0]
    assert get_score("betti_slope_norm")(inputs, quantile=0.4).value == pytest.approx(expected, abs=1e-12)
    eta = float(np.median(points))
    omega = known_omega(points, np.full(LINE_TAPS, eta), separator)
    expected = np.polyfit(DEPTH, omega / np.linalg.norm(omega), 1)[0]
    assert get_score("betti_slope")(inputs, eta=eta).value == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_betti_auc_known_answer(seed: int) -> None:
    """Ω_l = the area under the Betti-sum curve over the quantile grid, divided by its width
    (trapezoids written out), then θ as for betti_decay_norm."""
    taps, points, separator = line_taps(seed)
    grid = np.linspace(0.1, 0.5, 5)
    curve = np.stack([known_omega(points, pooled_quantile(taps, q), separator) for q in grid])  # (5, L)
    area = sum((grid[i + 1] - grid[i]) * (curve[i] + curve[i + 1]) / 2 for i in range(grid.size - 1))
    omega = area / (grid[-1] - grid[0])
    out = get_score("betti_auc")(ScoreInputs(labels=LINE_LABELS, taps=taps), points=5, low=0.1, high=0.5)
    assert [tap["omega"] for tap in out.details["taps"]] == pytest.approx(omega.tolist(), abs=1e-12)
    assert out.value == pytest.approx(closed_form_theta(omega, DEPTH), rel=1e-7, abs=1e-12)
