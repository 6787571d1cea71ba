"""Cubical Betti numbers: known answers on shapes you can draw, the tie rule, and agreement of
the fast path with gudhi and with CubicalRipser (the authors' tool)."""

from __future__ import annotations

import gudhi
import numpy as np
import pytest
from scipy import ndimage

from zoorank.errors import InvalidInputError
from zoorank.topology import (
    as_volume,
    betti_curve,
    betti_curve_from_intervals,
    betti_from_intervals,
    betti_numbers,
    euler_characteristic,
    fast,
    mask_betti,
    persistence_intervals,
    sublevel_betti,
)
from zoorank.topology.batch import betti_numbers_batch, stacked_betti_sum


def _all_paths(volume: np.ndarray, eta: float, rule: str) -> list[list[int]]:
    """Betti numbers by the fast path and by counting gudhi's persistence intervals."""
    fast = betti_numbers(volume, eta, rule=rule).tolist()
    reference = betti_from_intervals(persistence_intervals(volume), eta, rule=rule).tolist()
    return [fast, reference]


def _cripser_intervals(volume: np.ndarray) -> list[np.ndarray]:
    cripser = pytest.importorskip("cripser")
    # The authors' call: V-construction (the default, not computePH_T), dimensions 0..2.
    table = cripser.computePH(np.asarray(volume, dtype=np.float64), maxdim=2)
    return [table[table[:, 0] == k][:, 1:3] for k in range(3)]


def _smooth_random(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (field / field.std()).astype(np.float32)


# --- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["closed", "half_open"])
def test_solid_cube_is_one_component(rule: str) -> None:
    cube = np.zeros((4, 4, 4))
    assert _all_paths(cube, 0.0, rule) == [[1, 0, 0]] * 2
    assert _all_paths(cube, -0.5, rule) == [[0, 0, 0]] * 2  # below every value: empty


def test_low_ring_around_high_centre_has_one_loop() -> None:
    ring = np.full((1, 5, 5), 2.0)
    ring[0, 1:4, 1:4] = 0.0
    ring[0, 2, 2] = 1.0  # the ring of 0s encloses a centre of 1
    assert _all_paths(ring, 0.5, "closed") == [[1, 1, 0]] * 2
    assert _all_paths(ring, 1.5, "half_open") == [[1, 0, 0]] * 2  # the centre fills the hole


def test_high_ring_around_low_centre() -> None:
    """A 2-D slice (1-thick volume): 0s outside, a square ring of 2s, 0s in the centre.

    {a ≤ η} for 0 ≤ η < 2 is the centre blob plus the outer frame around the ring: two
    components, and the frame is a loop. At η ≥ 2 everything is in: one solid square.
    """
    image = np.zeros((9, 9))
    image[2:7, 2:7] = 2.0
    image[3:6, 3:6] = 0.0
    for rule in ("closed", "half_open"):
        assert _all_paths(image, 1.0, rule) == [[2, 1, 0]] * 2
        assert _all_paths(image, 2.5, rule) == [[1, 0, 0]] * 2
    # At η = 2 exactly the frame's loop and the centre die: alive under b ≤ η ≤ d only.
    assert _all_paths(image, 2.0, "closed") == [[2, 1, 0]] * 2
    assert _all_paths(image, 2.0, "half_open") == [[1, 0, 0]] * 2


def test_hollow_sphere_has_one_void() -> None:
    grid = np.indices((13, 13, 13)) - 6.0
    radius = np.sqrt((grid**2).sum(axis=0))
    distance_to_shell = np.abs(radius - 4.0)
    for rule in ("closed", "half_open"):
        assert _all_paths(distance_to_shell, 0.9, rule) == [[1, 0, 1]] * 2


def test_two_separated_blobs() -> None:
    volume = np.ones((5, 6, 12))
    volume[1:4, 1:4, 1:4] = 0.0
    volume[1:4, 2:5, 7:11] = 0.0
    assert _all_paths(volume, 0.5, "closed") == [[2, 0, 0]] * 2


def test_diagonal_voxels_are_not_connected_but_diagonal_holes_are() -> None:
    """V-construction: the set is 6-connected, its complement 26-connected."""
    diagonal = np.zeros((2, 2, 2), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
    assert mask_betti(diagonal).tolist() == [2, 0, 0]
    shell = np.ones((4, 4, 4), bool)
    shell[1, 1, 1] = shell[2, 2, 2] = False  # two holes touching at a corner: one void
    assert mask_betti(shell).tolist() == [1, 0, 1]


def test_euler_characteristic_known_shapes() -> None:
    assert euler_characteristic(np.ones((3, 4, 5), bool)) == 1  # solid box
    hollow = np.ones((3, 3, 3), bool)
    hollow[1, 1, 1] = False
    assert euler_characteristic(hollow) == 2  # a sphere: 1 - 0 + 1
    torus = np.ones((1, 3, 3), bool)
    torus[0, 1, 1] = False
    assert euler_characteristic(torus) == 0  # a loop: 1 - 1


# --- the tie rule ----------------------------------------------------------------------------


def test_tie_rule_pinned_on_a_drawable_case() -> None:
    """A loop of 0s around a 1: its interval is [0, 1). At η = 1 the authors (b ≤ η ≤ d) still
    count it; the homology of {a ≤ 1} (gudhi's persistent_betti_numbers(1, 1)) does not."""
    ring = np.zeros((1, 3, 3))
    ring[0, 1, 1] = 1.0
    assert betti_numbers(ring, 1.0).tolist() == [1, 1, 0]
    assert betti_numbers(ring, 1.0, rule="half_open").tolist() == [1, 0, 0]
    complex_ = gudhi.CubicalComplex(vertices=ring)
    complex_.compute_persistence()
    assert complex_.persistent_betti_numbers(1.0, 1.0)[:2] == [1, 0]
    assert sublevel_betti(ring, 1.0).tolist() == [1, 0, 0]


def test_tie_rule_matches_persistence_on_deliberate_ties() -> None:
    """Quantised maps (many voxels exactly at η; every other one a ReLU map): both rules equal
    the counts of gudhi's intervals, with deaths at η in every degree among the cases, so the
    degree-1 correction (local relative homology) is exercised too."""
    deaths_at_eta = np.zeros(3, dtype=int)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        shape = tuple(int(s) for s in rng.integers(3, 9, size=3))
        volume = np.round(_smooth_random(rng, shape, 0.8) * 2.0) / 2.0  # steps of 0.5
        if seed % 2:
            volume = np.maximum(volume, 0.0)
        intervals = persistence_intervals(volume)
        for eta in (-0.5, 0.0, 0.5, 1.0):
            for rule in ("closed", "half_open"):
                expected = betti_from_intervals(intervals, eta, rule=rule)
                assert betti_numbers(volume, eta, rule=rule).tolist() == expected.tolist()
            deaths_at_eta += [int((pairs[:, 1] == eta).sum()) for pairs in intervals]
    assert (deaths_at_eta > 0).all(), deaths_at_eta


def test_no_interval_dies_at_zero_on_a_relu_map() -> None:
    """A death d = 0 needs a birth b < 0, impossible when a ≥ 0: at η = 0 on a ReLU map the two
    rules agree however many voxels are exactly 0."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        volume = np.maximum(_smooth_random(rng, (6, 7, 8), 0.7), 0.0)
        assert (volume == 0).mean() > 0.3
        closed = betti_numbers(volume, 0.0)
        assert closed.tolist() == betti_numbers(volume, 0.0, rule="half_open").tolist()
        assert closed.tolist() == betti_from_intervals(persistence_intervals(volume), 0.0).tolist()


def test_tie_rule_on_a_loop_that_dies_far_from_its_filler() -> None:
    """A big loop of 0s filled by a disc of 0.5s: the degree-1 death at η = 0.5 is global."""
    image = np.full((1, 9, 9), 3.0)
    image[0, 1:8, 1:8] = 0.0
    image[0, 2:7, 2:7] = 0.5
    image[0, 4, 4] = 0.0  # the filler has its own 0 in the middle
    assert betti_numbers(image, 0.5).tolist() == _all_paths(image, 0.5, "closed")[1]
    assert betti_numbers(image, 0.5).tolist() == [2, 1, 0]
    assert betti_numbers(image, 0.5, rule="half_open").tolist() == [1, 0, 0]


# --- agreement: fast path == gudhi == CubicalRipser --------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_equals_gudhi_and_cripser(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(s) for s in rng.integers(4, 12, size=3))
    volume = _smooth_random(rng, shape, 1.0)
    from_gudhi = persistence_intervals(volume)
    from_cripser = _cripser_intervals(volume)
    for eta in (-0.5, 0.1, 0.5, float(volume.flat[7])):  # 0.1 is not a float32; flat[7] is a tie
        for rule in ("closed", "half_open"):
            fast = betti_numbers(volume, eta, rule=rule).tolist()
            assert fast == betti_from_intervals(from_gudhi, eta, rule=rule).tolist()
            assert fast == betti_from_intervals(from_cripser, eta, rule=rule).tolist()


def test_betti_curve_equals_counts_of_intervals() -> None:
    volume = _smooth_random(np.random.default_rng(7), (6, 7, 8), 1.0)
    etas = np.linspace(-1.5, 1.5, 7)
    expected = betti_curve_from_intervals(persistence_intervals(volume), etas)
    assert betti_curve(volume, etas).tolist() == expected.tolist()


def test_batch_equals_one_by_one_and_is_parallel_safe() -> None:
    rng = np.random.default_rng(3)
    volumes = [_smooth_random(rng, (5, 6, 7), 1.0) for _ in range(6)]
    etas = np.array([-0.3, 0.0, 0.4])
    one_by_one = np.stack([betti_curve(v, etas) for v in volumes])
    assert np.array_equal(betti_numbers_batch(volumes, etas, workers=2), one_by_one)
    assert np.array_equal(betti_numbers_batch(volumes, etas, workers=1), one_by_one)
    per_volume = np.tile(etas, (6, 1))
    assert np.array_equal(betti_numbers_batch(volumes, per_volume, workers=2), one_by_one)
    with pytest.raises(InvalidInputError, match="thresholds"):
        betti_numbers_batch(volumes, np.zeros((2, 3)))


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([0.0, np.nan, 1.0]).reshape(1, 1, 3), "non-finite"),
        (np.full((2, 2, 2), np.inf), "non-finite"),
        (np.zeros(5), "3-D"),
        (np.zeros((2, 2, 2, 2)), "3-D"),
        (np.zeros((0, 3, 3)), "empty"),
    ],
)
def test_bad_volumes_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        betti_numbers(array, 0.0)
    with pytest.raises(InvalidInputError, match=message):
        as_volume(array)


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="rule"):
        betti_numbers(np.zeros((2, 2, 2)), 0.0, rule="open")  # type: ignore[arg-type]


def test_component_counts_equal_scipy_labelling() -> None:
    """The fast path labels with cc3d; scipy.ndimage.label is an independent implementation of
    the same 6- and 26-connectivity: components and voids of random masks must agree."""
    rng = np.random.default_rng(21)
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(2, 12, size=3))
        mask = _smooth_random(rng, shape, rng.uniform(0.3, 1.2)) <= rng.uniform(-1.0, 1.5)
        padded = np.pad(~mask, 1, constant_values=True)
        voids = ndimage.label(padded, structure=np.ones((3, 3, 3), bool))[1] - 1
        assert fast._void_count(mask) == voids
        components = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 1))[1]
        assert fast._components(mask, 6)[1] == components


def test_large_volume_agrees_with_cripser() -> None:
    volume = _smooth_random(np.random.default_rng(22), (24, 30, 32), 1.0)
    intervals = _cripser_intervals(volume)
    for eta in (-0.5, 0.5, 1.5):
        assert betti_numbers(volume, eta).tolist() == betti_from_intervals(intervals, eta).tolist()


def test_stacked_sum_equals_sum_of_volumes() -> None:
    """Stacking volumes with an empty plane between them is a disjoint union: every count adds,
    ties included; thin maps are relabelled with their longest axis last."""
    rng = np.random.default_rng(23)
    for shape in [(3, 4, 5), (40, 2, 2), (2, 9, 3)]:
        volumes = np.stack([_smooth_random(rng, shape, 0.8) for _ in range(4)])
        volumes = np.round(volumes * 2.0) / 2.0  # ties at 0 and 0.5
        etas = [-0.5, 0.0, 0.5, 0.3]
        one_by_one = sum(betti_curve(v, etas) for v in volumes)
        assert stacked_betti_sum(volumes, etas).tolist() == one_by_one.tolist()
        half_open = sum(betti_curve(v, etas, rule="half_open") for v in volumes)
        assert stacked_betti_sum(volumes, etas, rule="half_open").tolist() == half_open.tolist()
