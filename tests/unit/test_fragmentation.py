"""Fragmentation along same-class paths: 0 for a linear model on separable data, > 0 otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores.fragmentation import path_class_changes, same_class_pairs


def _images(xy: np.ndarray) -> np.ndarray:
    """2-D points as (n, 1, 1, 2) "images"."""
    return xy.astype(np.float32).reshape(-1, 1, 1, 2)


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


def _separable(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    xy = rng.uniform(0.0, 1.0, size=(n, 2))
    xy[:, 0] += np.where(labels == 1, 1.5, -1.5)
    return xy, labels


def _checkerboard(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    xy = np.random.default_rng(seed).uniform(0.0, 4.0, size=(n, 2))
    labels = (np.floor(xy[:, 0]) + np.floor(xy[:, 1])).astype(int) % 2
    return xy, labels


def test_path_changes_counted_by_hand() -> None:
    def stripes(x: np.ndarray) -> np.ndarray:  # class = floor(x) mod 2
        return np.floor(x[:, 0]).astype(int) % 2

    starts = np.array([[0.5], [0.5], [0.5]])
    ends = np.array([[0.9], [2.5], [4.5]])
    changes, ends_pred = path_class_changes(stripes, starts, ends, steps=41)
    assert changes.tolist() == [0, 2, 4]
    assert ends_pred.tolist() == [[0, 0], [0, 0], [0, 0]]


def test_linear_model_on_separable_data_never_fragments() -> None:
    xy, labels = _separable()
    inputs = ScoreInputs(labels=labels, images=_images(xy), model=_linear, features=xy)
    out = get_score("fragmentation")(inputs)
    assert out.value == 0.0 and out.details["fraction_fragmented"] == 0.0
    assert get_score("hidden_fragmentation")(inputs).value == 0.0


def test_checkerboard_labels_fragment() -> None:
    xy, labels = _checkerboard()
    inputs = ScoreInputs(labels=labels, images=_images(xy), model=_linear, features=xy)
    assert get_score("fragmentation")(inputs).value > 0.2
    assert get_score("hidden_fragmentation")(inputs).value > 0.2


def test_a_nonlinear_model_fragments_paths_whose_ends_agree() -> None:
    # Features sin(πx), sin(πy) make the probe's classes alternate along straight lines.
    xy, labels = _checkerboard()

    def waves(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return torch.cat(
            [
                torch.sin(torch.pi * flat),
                torch.sin(torch.pi * flat[:, :1]) * torch.sin(torch.pi * flat[:, 1:]),
            ],
            1,
        )

    out = get_score("fragmentation")(ScoreInputs(labels=labels, images=_images(xy), model=waves), steps=64)
    changes = np.asarray(out.details["changes"])
    assert out.details["max_changes"] >= 2 and (changes >= 2).any()


def test_pairs_are_same_class_distinct_and_order_invariant() -> None:
    xy, labels = _checkerboard(60)
    keys = xy @ np.array([0.3, 0.7])
    pairs = same_class_pairs(keys, labels, pairs=20, seed=0)
    assert (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all() and (pairs[:, 0] != pairs[:, 1]).all()
    perm = np.random.default_rng(1).permutation(60)
    moved = same_class_pairs(keys[perm], labels[perm], pairs=20, seed=0)
    np.testing.assert_array_equal(perm[moved], pairs)
    score = get_score("hidden_fragmentation")
    assert (
        score(ScoreInputs(labels=labels, features=xy)).value
        == score(ScoreInputs(labels=labels[perm], features=xy[perm])).value
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_are_refused(bad: float) -> None:
    xy, labels = _separable()
    xy[2, 1] = bad
    with pytest.raises(InvalidInputError, match="non-finite"):
        get_score("fragmentation")(ScoreInputs(labels=labels, images=_images(xy), model=_linear))
    with pytest.raises(InvalidInputError, match="non-finite"):
        get_score("hidden_fragmentation")(ScoreInputs(labels=labels, features=xy))


def test_bad_steps_are_refused() -> None:
    xy, labels = _separable()
    with pytest.raises(InvalidInputError, match="steps"):
        get_score("hidden_fragmentation")(ScoreInputs(labels=labels, features=xy), steps=1)


def test_hidden_nearest_neighbour_variant_sees_interleaved_classes() -> None:
    score = get_score("hidden_fragmentation")
    xy, labels = _separable()
    assert score(ScoreInputs(labels=labels, features=xy), classifier="nearest_neighbour").value == 0
    xy, labels = _checkerboard(400)
    out = score(ScoreInputs(labels=labels, features=xy), classifier="nearest_neighbour")
    assert out.value > 0.5 and out.details["classifier"] == "nearest_neighbour"
    with pytest.raises(InvalidInputError, match="classifier"):
        score(ScoreInputs(labels=labels, features=xy), classifier="svm")


def test_hidden_paths_join_held_out_rows_only() -> None:
    xy, labels = _checkerboard(100)
    out = get_score("hidden_fragmentation")(ScoreInputs(labels=labels, features=xy), holdout=0.2)
    used = np.unique(np.asarray(out.details["pairs"]))
    assert used.size <= 20 + 2  # about a fifth of the rows (rounding per class)
