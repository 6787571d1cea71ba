"""Activation sparsity and per-tap class clustering against hand-made taps."""

from __future__ import annotations

import numpy as np
import pytest

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores.activations import class_silhouette, pooled, zero_fraction


def _taps(m: int = 40, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], m // 2)
    pre = rng.normal(size=(m, 4, 3, 3))
    separated = rng.normal(size=(m, 4, 3, 3)) * 0.1 + np.where(labels == 1, 5.0, -5.0)[:, None, None, None]
    return {"conv": pre, "act": np.maximum(pre, 0.0), "late": separated}, labels


def test_zero_fraction_and_pooling_by_hand() -> None:
    assert zero_fraction(np.array([[0.0, 1.0], [0.0, 0.0]])) == 0.75
    maps = np.arange(8.0).reshape(1, 2, 2, 2)
    np.testing.assert_allclose(pooled(maps), [[1.5, 5.5]])
    assert pooled(maps, pooling="flatten").shape == (1, 8)


def test_silhouette_of_two_tight_far_groups_is_near_one_and_of_mixed_groups_near_zero() -> None:
    rng = np.random.default_rng(0)
    points = np.r_[rng.normal(size=(20, 2)) * 0.01, rng.normal(size=(20, 2)) * 0.01 + 100.0]
    labels = np.repeat([0, 1], 20)
    assert class_silhouette(points, labels) > 0.99
    assert abs(class_silhouette(points, rng.permutation(labels))) < 0.2


def test_sparsity_summarises_only_post_activation_taps() -> None:
    taps, labels = _taps()
    out = get_score("activation_sparsity")(ScoreInputs(labels=labels, taps=taps))
    assert out.details["summarised_taps"] == ["act"]
    assert out.value == pytest.approx(zero_fraction(taps["act"]))
    assert 0.4 < out.value < 0.6  # ReLU of a symmetric distribution
    assert out.details["per_tap"]["conv"]["zero_fraction"] == 0.0


def test_cluster_quality_per_tap_and_summary() -> None:
    taps, labels = _taps()
    out = get_score("cluster_quality")(ScoreInputs(labels=labels, taps=taps))
    per_tap = out.details["per_tap"]
    assert per_tap["late"] > 0.9 and abs(per_tap["conv"]) < 0.2
    assert out.value == pytest.approx(np.mean(list(per_tap.values())))
    last = get_score("cluster_quality")(ScoreInputs(labels=labels, taps=taps), summary="last")
    assert last.value == pytest.approx(per_tap["late"])


def test_tap_rows_select_the_labels() -> None:
    taps, labels = _taps()
    all_labels = np.r_[labels, labels[::-1]]
    rows = np.arange(labels.size)
    out = get_score("cluster_quality")(ScoreInputs(labels=all_labels, taps=taps, tap_rows=rows))
    assert out.details["per_tap"]["late"] > 0.9


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_taps_are_refused(bad: float) -> None:
    taps, labels = _taps()
    taps["act"][0, 0, 0, 0] = bad
    for name in ("activation_sparsity", "cluster_quality"):
        with pytest.raises(InvalidInputError, match="NaN"):
            get_score(name)(ScoreInputs(labels=labels, taps=taps))


def test_inconsistent_taps_are_refused() -> None:
    taps, labels = _taps()
    taps["late"] = taps["late"][:10]
    with pytest.raises(InvalidInputError, match="disagree"):
        get_score("activation_sparsity")(ScoreInputs(labels=labels, taps=taps))
    with pytest.raises(InvalidInputError, match="taps"):
        get_score("cluster_quality")(ScoreInputs(labels=labels, taps={}))


def test_cluster_subsample_survives_shuffles_and_class_renaming() -> None:
    taps, labels = _taps(60)
    labels = np.arange(60) % 3
    score = get_score("cluster_quality")
    base = score(ScoreInputs(labels=labels, taps=taps), samples=20).value
    perm = np.random.default_rng(0).permutation(60)
    moved = {name: arr[perm] for name, arr in taps.items()}
    got = score(ScoreInputs(labels=(labels[perm] + 1) % 3, taps=moved), samples=20).value
    assert got == pytest.approx(base, rel=1e-12)


def test_cluster_quality_known_answer_by_hand() -> None:
    """Two taps whose channel means put 4 samples (classes 0, 0, 1, 1) on a line, at 0, 2, 5, 9
    and at 0, 1, 3, 3. With a_i the mean distance to the own class and b_i to the other:
    tap a: s = (7-2)/7, (5-2)/5, (4-4)/4, (8-4)/8, mean 127/280;
    tap b: s = (3-1)/3, (2-1)/2, (2.5-0)/2.5, (2.5-0)/2.5, mean 19/24."""
    labels = np.array([0, 0, 1, 1])
    # (4, 2, 2, 2) maps whose mean over channels and pixels is the point (the offsets sum to 0)
    offsets = np.array([[[-1.0, 1.0], [2.0, -2.0]], [[3.0, -3.0], [0.5, -0.5]]])

    def maps(points: list[float]) -> np.ndarray:
        return np.array(points)[:, None, None, None] + offsets[None]

    taps = {"a": maps([0, 2, 5, 9]), "b": maps([0, 1, 3, 3])}
    out = get_score("cluster_quality")(ScoreInputs(labels=labels, taps=taps))
    assert out.details["per_tap"] == pytest.approx({"a": 127 / 280, "b": 19 / 24}, rel=1e-12)
    assert out.value == pytest.approx((127 / 280 + 19 / 24) / 2, rel=1e-12)
    last = get_score("cluster_quality")(ScoreInputs(labels=labels, taps=taps), summary="last")
    assert last.value == pytest.approx(19 / 24, rel=1e-12)
