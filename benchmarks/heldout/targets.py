"""The targets of the held-out benchmark: 8 small image tasks built from digits, Fashion-MNIST
and generated images only, each behind a reference a user could also rank.

Datasets that other installed packages happen to ship are deliberately absent: the project is
checked on such data, which it must not have been tuned on.

Each target is written once, deterministically (fixed seeds), as ``NAME.npz`` (arrays ``x``
uint8 (n, h, w, 3), ``y`` int64) under :data:`TARGET_DIR`; its ``npz:`` reference is rankable
with ``ZOORANK_DATA_ROOTS`` including that folder. The builtin ones need no file.

| name | built from | classes | train/class |
|---|---|---|---|
| shirt-vs-tshirt | Fashion-MNIST test, classes t-shirt (0) vs shirt (6): a hard binary task | 2 | 100 |
| digits-shifted | digits rotated 90°, inverted, Gaussian noise σ=24: a shifted domain, low data | 10 | 30 |
| textures | generated colour textures: stripes, diagonals, checks, dots; random period, colours | 4 | 100 |
| shapes | generated shapes: disc, square, triangle, cross; random size, place, colours | 4 | 100 |
| fashion-lowres | Fashion-MNIST trouser, dress, coat, bag at 7 px (upsampled back), noise σ=30 | 4 | 100 |
| fashion-unseen | Fashion-MNIST classes 5-9, none of which the controlled zoo's source task had | 5 | 100 |
| digits | ``builtin:digits`` | 10 | 100 |
| fashion | ``builtin:fashion-mnist`` (test split) | 10 | 100 |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoorank.data import load_dataset

TARGET_DIR = Path("benchmarks/data/targets")


@dataclass(frozen=True)
class Target:
    """One benchmark target: its name, reference, and split sizes per class."""

    name: str
    ref: str
    train_per_class: int
    val_per_class: int = 20
    test_per_class: int = 100
    description: str = ""
    # Optimiser steps every fine-tuning run of this target sees at least (None: the benchmark's
    # minimum). shapes needs more: at 120 steps the resnet10t snapshots ended at 0.58-0.75
    # train accuracy (units of commit 7168609).
    min_steps: int | None = None


def _fashion(classes: tuple[int, ...], per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("builtin:fashion-mnist")
    rng = np.random.default_rng(seed)
    rows = np.concatenate(
        [rng.choice(np.flatnonzero(data.labels == c), per_class, replace=False) for c in classes]
    )
    rows.sort()
    return data.read(rows), np.searchsorted(np.asarray(classes), data.labels[rows])


def _noisy(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x.astype(np.float64) + rng.normal(0.0, sigma, x.shape), 0, 255).astype(np.uint8)


def shirt_vs_tshirt() -> tuple[np.ndarray, np.ndarray]:
    return _fashion((0, 6), 300, seed=11)


def digits_shifted() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("builtin:digits")
    rows = np.arange(len(data))
    x = 255 - np.rot90(data.read(rows), k=1, axes=(1, 2))
    return _noisy(np.ascontiguousarray(x), 24.0, np.random.default_rng(12)), data.labels.copy()


def fashion_lowres() -> tuple[np.ndarray, np.ndarray]:
    x, y = _fashion((1, 3, 4, 8), 250, seed=13)
    small = x.reshape(len(x), 7, 4, 7, 4, 3).mean(axis=(2, 4))
    blocky = np.repeat(np.repeat(small, 4, axis=1), 4, axis=2)
    return _noisy(blocky, 30.0, np.random.default_rng(14)), y


def fashion_unseen() -> tuple[np.ndarray, np.ndarray]:
    return _fashion((5, 6, 7, 8, 9), 300, seed=15)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours at least 120 apart (so the pattern is visible)."""
    while True:
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if np.abs(a - b).sum() >= 120:
            return a.astype(np.float64), b.astype(np.float64)


def textures(per_class: int = 200, size: int = 32, seed: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Binary patterns mixed between two random colours: 0 stripes, 1 diagonal stripes,
    2 checks, 3 dots; period 4-10 px, random phase, Gaussian noise σ=20."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images, labels = [], []
    for cls in range(4):
        for _ in range(per_class):
            period = rng.uniform(4.0, 10.0)
            phase = rng.uniform(0, 2 * np.pi, 2)
            u, v = 2 * np.pi * xx / period + phase[0], 2 * np.pi * yy / period + phase[1]
            if cls == 0:
                mask = np.sin(v) > 0
            elif cls == 1:
                mask = np.sin((u + v) / np.sqrt(2)) > 0
            elif cls == 2:
                mask = (np.sin(u) > 0) ^ (np.sin(v) > 0)
            else:
                mask = np.sin(u) * np.sin(v) > 0.5
            a, b = _colours(rng)
            image = np.where(mask[..., None], a, b)
            images.append(np.clip(image + rng.normal(0, 20.0, image.shape), 0, 255).astype(np.uint8))
            labels.append(cls)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def shapes(per_class: int = 200, size: int = 32, seed: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """One filled shape on a noisy background of another colour: 0 disc, 1 square,
    2 triangle, 3 cross; radius 5-12 px, centre anywhere the shape fits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images, labels = [], []
    for cls in range(4):
        for _ in range(per_class):
            r = rng.uniform(5.0, 12.0)
            cx, cy = rng.uniform(r, size - r, 2)
            dx, dy = xx - cx, yy - cy
            if cls == 0:
                mask = dx**2 + dy**2 <= r**2
            elif cls == 1:
                mask = (np.abs(dx) <= r * 0.8) & (np.abs(dy) <= r * 0.8)
            elif cls == 2:
                mask = (dy <= r * 0.7) & (dy >= -r + 2 * np.abs(dx) * 0.85)
            else:
                mask = ((np.abs(dx) <= r * 0.3) | (np.abs(dy) <= r * 0.3)) & (
                    np.maximum(np.abs(dx), np.abs(dy)) <= r
                )
            a, b = _colours(rng)
            image = np.where(mask[..., None], a, b)
            images.append(np.clip(image + rng.normal(0, 25.0, image.shape), 0, 255).astype(np.uint8))
            labels.append(cls)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


_BUILDERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "shirt-vs-tshirt": shirt_vs_tshirt,
    "digits-shifted": digits_shifted,
    "textures": textures,
    "shapes": shapes,
    "fashion-lowres": fashion_lowres,
    "fashion-unseen": fashion_unseen,
}

# Cheapest first, so an interrupted run has whole targets done.
TARGETS: tuple[Target, ...] = (
    Target(
        "shirt-vs-tshirt",
        "npz:benchmarks/data/targets/shirt-vs-tshirt.npz",
        100,
        description="Fashion-MNIST t-shirt vs shirt",
    ),
    Target(
        "digits-shifted",
        "npz:benchmarks/data/targets/digits-shifted.npz",
        30,
        description="digits rotated, inverted, noisy",
    ),
    Target(
        "textures",
        "npz:benchmarks/data/targets/textures.npz",
        100,
        description="generated colour textures, 4 kinds",
    ),
    Target(
        "shapes",
        "npz:benchmarks/data/targets/shapes.npz",
        100,
        description="generated shapes, 4 kinds",
        min_steps=360,
    ),
    Target(
        "fashion-lowres",
        "npz:benchmarks/data/targets/fashion-lowres.npz",
        100,
        description="Fashion-MNIST 4 classes at 7 px",
    ),
    Target(
        "fashion-unseen",
        "npz:benchmarks/data/targets/fashion-unseen.npz",
        100,
        description="Fashion-MNIST classes 5-9",
    ),
    Target("digits", "builtin:digits", 100, test_per_class=0, description="scikit-learn digits"),
    Target("fashion", "builtin:fashion-mnist", 100, description="Fashion-MNIST test split"),
)


def write_targets(folder: Path = TARGET_DIR) -> list[Path]:
    """Write every generated target's ``.npz`` (skipping those already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in _BUILDERS.items():
        path = folder / f"{name}.npz"
        if not path.exists():
            x, y = build()
            np.savez_compressed(path, x=x, y=y.astype(np.int64))
        written.append(path)
    return written
