"""Shared pieces of the margin and representation-diagnostic scores (not a score module).

* :func:`fit_linear_probe` -- a multinomial logistic-regression probe expressed as raw-space
  weights ``W (C, d)`` and biases ``b (C,)``, so margins are measured in the features' own units.
* :func:`content_order_split` / :func:`content_order_subset` -- stratified, seeded choices of
  rows that depend on the rows' *content*, not on their position, so a score stays the same
  when the samples are shuffled or the classes renamed.
* :func:`check_images`, :func:`forward_batched` -- input-space scores: validated images and a
  batched, gradient-free call of the model callable.

The model callable (:attr:`ScoreInputs.model`) takes CPU ``float32`` tensors ``(b, c, h, w)``
and returns pre-logits ``(b, d)``; device placement, if any, is its own business.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import check_matrix


@dataclass(frozen=True)
class LinearProbe:
    """Class scores ``f(x) = x Wᵀ + b`` of a fitted probe, in the raw feature space.

    Attributes:
        weights: ``(C, d)`` one row per class.
        bias: ``(C,)``.
    """

    weights: np.ndarray
    bias: np.ndarray

    def scores(self, features_nd: np.ndarray) -> np.ndarray:
        """Class scores ``(n, C)`` for features ``(n, d)``."""
        return features_nd @ self.weights.T + self.bias

    def as_torch(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The same probe as a differentiable torch function ``(b, d) -> (b, C)``."""
        w = torch.as_tensor(self.weights, dtype=torch.float32)
        b = torch.as_tensor(self.bias, dtype=torch.float32)

        def apply(features: torch.Tensor) -> torch.Tensor:
            return features.float() @ w.to(features.device).T + b.to(features.device)

        return apply


def fit_linear_probe(
    features_nd: np.ndarray, labels_n: np.ndarray, *, c: float = 1.0, max_iter: int = 2000
) -> LinearProbe:
    """Multinomial logistic regression on isotropically scaled features, mapped back to raw units.

    The fit runs on ``(x - μ) / s`` with one scalar ``s = sqrt(mean_k Var(x_k))`` (the RMS
    feature standard deviation), so the features have unit variance on average but keep their
    geometry: per-feature standardisation would stretch near-constant directions and tilt the
    boundary towards them, which changes every margin. With fitted ``V, a`` the raw-space probe
    is ``W = V / s``, ``b = a - W μ``, which gives the same class scores. Two classes come back
    as two rows ``[0, w]``, ``[0, b]`` so that ``f_1 - f_0`` is sklearn's decision function.

    Args:
        features_nd: ``(n, d)`` finite floats.
        labels_n: ``(n,)`` labels ``0..C-1``, every class present.
        c: inverse L2 strength of sklearn's ``LogisticRegression``.
        max_iter: L-BFGS iteration cap (convergence warnings are silenced).

    Example:
        >>> x = np.array([[-2.0], [-1.0], [1.0], [2.0]]); y = np.array([0, 0, 1, 1])
        >>> probe = fit_linear_probe(x, y)
        >>> bool((probe.scores(x).argmax(1) == y).all())
        True
    """
    mean = features_nd.mean(axis=0)
    std = float(np.sqrt(features_nd.var(axis=0).mean()))
    std = std if std > 0 else 1.0
    model = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((features_nd - mean) / std, labels_n)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row for class 1 against class 0
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    weights = coef / std
    return LinearProbe(weights=weights, bias=intercept - weights @ mean)


def content_keys(rows: np.ndarray, *, seed: int) -> np.ndarray:
    """One pseudo-random key in [0, 1) per row (``(n,)``): a seeded hash of the row's bytes.

    Sorting by these keys gives a seeded random order that depends on what the rows contain,
    not on where they sit or what their classes are called, so choices made in that order
    survive a shuffle of the samples and a renaming of the classes. (A projection on a random
    direction would also do that, but its extremes are not a random sample.)

    Example:
        >>> rows = np.arange(6.0).reshape(3, 2)
        >>> keys = content_keys(rows, seed=0)
        >>> bool(np.array_equal(content_keys(rows[::-1], seed=0), keys[::-1]))
        True
    """
    flat = np.ascontiguousarray(rows.reshape(rows.shape[0], -1))
    salt = int(seed).to_bytes(8, "little", signed=True)
    digests = [
        int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8, salt=salt).digest(), "little")
        for row in flat
    ]
    return np.asarray(digests, dtype=np.float64) / 2.0**64


def _class_members_in_content_order(keys_n: np.ndarray, labels_n: np.ndarray) -> list[np.ndarray]:
    """Rows of each class in key order; classes ordered by their smallest key (not by name)."""
    members = []
    for cls in np.unique(labels_n):
        rows = np.flatnonzero(labels_n == cls)
        members.append(rows[np.argsort(keys_n[rows], kind="stable")])
    members.sort(key=lambda rows: float(keys_n[rows[0]]))
    return members


def content_order_split(
    keys_n: np.ndarray, labels_n: np.ndarray, *, holdout: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, held-out) row indices; every class keeps ≥ 1 row on each side.

    Raises:
        InvalidInputError: ``holdout`` outside (0, 1) or a class with fewer than 2 samples.
    """
    if not 0.0 < holdout < 1.0:
        raise InvalidInputError(f"holdout must be in (0, 1), got {holdout}", field="params")
    train, test = [], []
    for rows in _class_members_in_content_order(keys_n, labels_n):
        if rows.size < 2:
            raise InvalidInputError(
                "every class needs at least 2 samples to split into train and held-out; "
                f"class {int(labels_n[rows[0]])} has {rows.size}",
                field="labels",
            )
        k = min(max(1, round(holdout * rows.size)), rows.size - 1)
        test.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def content_order_subset(keys_n: np.ndarray, labels_n: np.ndarray, *, size: int) -> np.ndarray:
    """About ``size`` row indices, classes as equal as their sizes allow (round-robin), sorted.

    ``size <= 0`` or ``size >= n`` keeps every row.
    """
    n = labels_n.shape[0]
    if size <= 0 or size >= n:
        return np.arange(n)
    members = _class_members_in_content_order(keys_n, labels_n)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < size:
        for rows in members:
            if depth < rows.size and len(chosen) < size:
                chosen.append(int(rows[depth]))
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def check_images(images: Any, n: int) -> np.ndarray:
    """``images`` as finite float32 ``(n, c, h, w)``, or :class:`InvalidInputError`."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise InvalidInputError(f"images must be 4-D (n, c, h, w), got shape {images.shape}", field="images")
    if images.shape[0] != n:
        raise InvalidInputError(
            f"images has {images.shape[0]} rows but labels have {n}; they must match",
            field="images",
        )
    if not np.issubdtype(images.dtype, np.number):
        raise InvalidInputError(f"images must be numeric, got dtype {images.dtype}", field="images")
    images = images.astype(np.float32, copy=False)
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).sum())
        raise InvalidInputError(
            f"images contain {bad} non-finite values (NaN or inf); clean them first",
            field="images",
        )
    return images


def check_model_output(output: torch.Tensor, rows: int) -> torch.Tensor:
    """The model's pre-logits as ``(rows, d)``; refuses other shapes and NaN/inf."""
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != rows:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InvalidInputError(
            f"the model must map (b, c, h, w) images to (b, d) pre-logits; got {shape} for b = {rows}",
            field="model",
        )
    if not torch.isfinite(output).all():
        raise InvalidInputError(
            "the model returned non-finite pre-logits (NaN or inf) for finite images",
            field="model",
        )
    return output


def forward_batched(
    model: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, *, batch_size: int
) -> np.ndarray:
    """Pre-logits ``(n, d)`` float64 of ``images (n, c, h, w)``, without gradients."""
    outputs = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            outputs.append(check_model_output(model(batch), batch.shape[0]).detach().cpu())
    return torch.cat(outputs).double().numpy()


def image_space_inputs(
    inputs: Any, labels: np.ndarray, *, batch_size: int
) -> tuple[np.ndarray, Callable[[torch.Tensor], torch.Tensor], np.ndarray]:
    """Checked ``images (n, c, h, w)``, the model, and its pre-logits ``(n, d)`` for an
    input-space score: the cached features when given, else one batched forward pass."""
    n = labels.shape[0]
    images = check_images(inputs.images, n)
    model = inputs.model
    if inputs.features is not None:
        features = check_matrix(inputs.features, n)
    else:
        features = forward_batched(model, images, batch_size=batch_size)
    return images, model, features
