"""Translation sensitivity: exact invariance gives 1, a position-reading model less."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score
from zoorank.scores.translation import shift_images, translation_similarities


def _data(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, 8, 8)).astype(np.float32), np.repeat([0, 1, 2], n // 3)


def _mean_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


def _position_reader(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, :2, :2].flatten(1)  # the top-left corner only


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        ("circular", [[6, 7, 8], [0, 1, 2], [3, 4, 5]]),
        ("zeros", [[0, 0, 0], [0, 1, 2], [3, 4, 5]]),
        ("edge", [[0, 1, 2], [0, 1, 2], [3, 4, 5]]),
    ],
)
def test_shift_down_by_one(padding: str, expected: list[list[int]]) -> None:
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    got = shift_images(x, dy=1, dx=0, padding=padding)  # type: ignore[arg-type]
    assert got[0, 0].tolist() == expected


def test_shift_left_with_edge_padding_repeats_the_right_column() -> None:
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert shift_images(x, dy=0, dx=-1, padding="edge")[0, 0].tolist() == [
        [1, 2, 2],
        [4, 5, 5],
        [7, 8, 8],
    ]


def test_pixel_average_is_invariant_to_circular_shifts() -> None:
    images, labels = _data()
    out = get_score("translation_sensitivity")(ScoreInputs(labels=labels, images=images, model=_mean_pool))
    assert out.value == pytest.approx(1.0, abs=1e-9)
    assert out.details["by_shift"] == pytest.approx([1.0] * 4)


def test_zero_padding_breaks_the_invariance_of_the_average() -> None:
    images, labels = _data()
    images += 3.0  # a non-zero mean, so that zeros entering at the edge change the average
    out = get_score("translation_sensitivity")(
        ScoreInputs(labels=labels, images=images, model=_mean_pool), padding="zeros"
    )
    assert 0.5 < out.value < 1.0


def test_a_position_reading_model_is_sensitive_and_less_so_for_smooth_images() -> None:
    images, labels = _data()
    rough = get_score("translation_sensitivity")(
        ScoreInputs(labels=labels, images=images, model=_position_reader)
    )
    assert rough.value < 0.5
    constant = np.ones_like(images) * np.arange(1, 13, dtype=np.float32)[:, None, None, None]
    flat = get_score("translation_sensitivity")(
        ScoreInputs(labels=labels, images=constant, model=_position_reader)
    )
    assert flat.value == pytest.approx(1.0)


def test_similarity_array_layout() -> None:
    images, _ = _data(4)
    sims = translation_similarities(_position_reader, images, max_shift=3)
    assert sims.shape == (4, 2, 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images_are_refused(bad: float) -> None:
    images, labels = _data()
    images[0, 0, 0, 0] = bad
    with pytest.raises(InvalidInputError, match="non-finite"):
        get_score("translation_sensitivity")(ScoreInputs(labels=labels, images=images, model=_mean_pool))


def test_bad_parameters_are_refused() -> None:
    images, labels = _data()
    inputs = ScoreInputs(labels=labels, images=images, model=_mean_pool)
    with pytest.raises(InvalidInputError, match="padding"):
        get_score("translation_sensitivity")(inputs, padding="mirror")
    with pytest.raises(InvalidInputError, match="not smaller"):
        get_score("translation_sensitivity")(inputs, max_shift=8)


def test_subset_survives_shuffles_and_class_renaming() -> None:
    images, labels = _data(30)
    score = get_score("translation_sensitivity")
    base = score(ScoreInputs(labels=labels, images=images, model=_position_reader), samples=7).value
    perm = np.random.default_rng(0).permutation(30)
    moved = ScoreInputs(labels=(labels[perm] + 1) % 3, images=images[perm], model=_position_reader)
    assert score(moved, samples=7).value == pytest.approx(base, rel=1e-12)
