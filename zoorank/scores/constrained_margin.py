"""Constrained input margin: DeepFool distance to the boundary, searched in the data's PCA span.

Mouton, Theunissen, Davel. "Input Margins Can Predict Generalization Too", AAAI 2024
(arXiv 2308.15466). Input-space margins of a network say little about its generalisation,
but they do when the search for the nearest boundary point is restricted to the leading
principal directions of the data -- directions of high variance, "on the data manifold".

With ``V (D, m)`` orthonormal principal directions of the flattened inputs and a classifier
``f``, each DeepFool step (Moosavi-Dezfooli et al. 2016) linearises ``g = f_a - f_b`` at the
current point ``x = x_0 + (1 + η) r`` and takes the smallest step *inside span(V)* that zeroes
the linearisation:

    r ← r - g(x) · V Vᵀ∇g(x) / ||Vᵀ∇g(x)||² ,

until the predicted class changes (η the overshoot used only for that check). The margin is
``||r||``. For a correctly classified sample ``a`` is its class and ``b`` the current runner-up
(``argmax_{k≠y} f_k``); for a misclassified one ``a`` is the current prediction and ``b`` the true
class, and its margin is reported negative. For an affine classifier whose boundary normal
``n`` lies in span(V) one step lands exactly on the boundary at the analytic distance
``|g| / ||n||``; otherwise the constrained distance ``|g| / ||Vᵀn||`` is larger.

Here the classifier is the model (images -> pre-logits) followed by a linear probe fitted on
the pre-logits; the principal directions come from the target images; the distance is
divided by the inputs' total standard deviation ``sqrt(Σ_k Var(x_k))`` (as Jiang et al. do for
hidden layers) so that models with different input normalisation or resolution are measured
in the same units. Samples that never cross within ``max_iter`` steps, or whose projected
gradient vanishes, are counted in ``details["not_crossed"]`` and left out of the median.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from zoorank.errors import InvalidInputError
from zoorank.scores._geometry import (
    check_model_output,
    content_keys,
    content_order_subset,
    fit_linear_probe,
    image_space_inputs,
)
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels
from zoorank.scores.registry import ScoreSpec, register_score

_TINY = 1e-12


def principal_directions(flat_pd: np.ndarray, *, variance: float = 0.99, components: int = 0) -> np.ndarray:
    """Leading principal directions ``(D, m)`` (orthonormal columns, float32) of rows ``(p, D)``.

    ``m`` is ``components`` when positive, else the fewest directions whose eigenvalues hold
    ``variance`` of the total variance. Computed from the ``p × p`` Gram matrix of the centred
    rows, so the cost is ``O(p² D)`` and the memory ``O(p D)``; at most ``p - 1`` directions.

    Raises:
        InvalidInputError: ``variance`` outside (0, 1], fewer than 2 rows, constant rows.

    Example:
        >>> rows = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
        >>> np.abs(principal_directions(rows, variance=0.9)).round(3).T
        array([[1., 0., 0.]], dtype=float32)
    """
    if not 0.0 < variance <= 1.0:
        raise InvalidInputError(f"variance must be in (0, 1], got {variance}", field="params")
    if flat_pd.shape[0] < 2:
        raise InvalidInputError("PCA needs at least 2 images", field="images")
    mean = flat_pd.mean(axis=0, dtype=np.float64)
    gram = np.zeros((flat_pd.shape[0], flat_pd.shape[0]))
    for cols in _column_chunks(flat_pd.shape[1]):  # float64 in slices: O(p·chunk) extra memory
        xc = flat_pd[:, cols].astype(np.float64) - mean[cols]
        gram += xc @ xc.T
    eigvals, eigvecs = torch.linalg.eigh(torch.from_numpy(gram))
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0.0), eigvecs.flip(1)
    total = float(eigvals.sum())
    if not total > 0:
        raise InvalidInputError("the images are all identical; no principal direction", field="images")
    rank = int((eigvals > total * 1e-12).sum())
    if components > 0:
        m = min(components, rank)
    else:
        m = int(np.searchsorted(np.cumsum(eigvals.numpy()) / total, variance - 1e-12) + 1)
        m = min(m, rank)
    coefficients = (eigvecs[:, :m] / eigvals[:m].sqrt()).numpy()  # (p, m)
    basis = np.empty((flat_pd.shape[1], m), dtype=np.float32)  # orthonormal columns
    for cols in _column_chunks(flat_pd.shape[1]):
        basis[cols] = (flat_pd[:, cols].astype(np.float64) - mean[cols]).T @ coefficients
    return basis


def total_std(flat_pd: np.ndarray) -> float:
    """``sqrt(Σ_k Var(x_k))`` of rows ``(p, D)`` (population variance), in column slices.

    Example:
        >>> total_std(np.array([[0.0, 1.0], [2.0, 1.0]]))
        1.0
    """
    return float(np.sqrt(sum(flat_pd[:, cols].var(axis=0, dtype=np.float64).sum()
                             for cols in _column_chunks(flat_pd.shape[1]))))  # fmt: skip


def _column_chunks(width: int, size: int = 8192) -> list[slice]:
    return [slice(start, min(start + size, width)) for start in range(0, width, size)]


@dataclass(frozen=True)
class ConstrainedMargins:
    """Per-sample result of :func:`constrained_margins` (distances in input units)."""

    distances: np.ndarray  # (s,) signed ||r||: negative for misclassified samples
    crossed: np.ndarray  # (s,) bool: the prediction changed within max_iter steps
    iterations: np.ndarray  # (s,) gradient steps taken


def constrained_margins(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    labels: np.ndarray,
    basis_dm: np.ndarray,
    *,
    max_iter: int = 50,
    overshoot: float = 0.02,
    batch_size: int = 16,
) -> ConstrainedMargins:
    """Constrained DeepFool margins (Mouton et al. 2024) of ``images`` under ``classifier``.

    Formula: per step ``r ← r - g · V Vᵀ∇g / ||Vᵀ∇g||²`` with ``g = f_a - f_b`` at
    ``x_0 + (1 + overshoot) r`` (module docstring); the margin is ``±||r||`` at the first point
    whose predicted class differs from the start's.

    Args:
        classifier: differentiable ``(b, c, h, w) float32 -> (b, C)`` class scores.
        images: ``(s, c, h, w)`` float32 inputs.
        labels: ``(s,)`` true classes ``0..C-1``.
        basis_dm: ``(D, m)`` orthonormal columns, ``D = c·h·w`` (see :func:`principal_directions`).
        max_iter: gradient steps per sample before it counts as not crossed.
        overshoot: ``η``, the push past the linearised boundary used to test the crossing.
        batch_size: samples per forward/backward pass.

    Raises:
        InvalidInputError: ``basis_dm`` rows differ from ``c·h·w``; non-finite class scores.

    Example:
        >>> w = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # f = W x on 1×1×2 "images"
        >>> clf = lambda x: x.flatten(1) @ w.T
        >>> out = constrained_margins(clf, np.array([[[[2.0, 5.0]]]], np.float32),
        ...                           np.array([0]), np.eye(2, dtype=np.float32))
        >>> round(float(out.distances[0]), 4), bool(out.crossed[0])
        (2.0, True)
    """
    s = images.shape[0]
    flat_dim = int(np.prod(images.shape[1:]))
    if basis_dm.shape[0] != flat_dim:
        raise InvalidInputError(
            f"basis has {basis_dm.shape[0]} rows but images have {flat_dim} values each",
            field="images",
        )
    basis = torch.as_tensor(basis_dm, dtype=torch.float32)
    distances = np.zeros(s)
    crossed = np.zeros(s, dtype=bool)
    iterations = np.zeros(s, dtype=np.int64)
    for start in range(0, s, batch_size):
        stop = min(start + batch_size, s)
        d, c, it = _search_batch(
            classifier,
            torch.from_numpy(np.ascontiguousarray(images[start:stop])),
            torch.as_tensor(labels[start:stop], dtype=torch.long),
            basis,
            max_iter=max_iter,
            overshoot=overshoot,
        )
        distances[start:stop], crossed[start:stop], iterations[start:stop] = d, c, it
    return ConstrainedMargins(distances=distances, crossed=crossed, iterations=iterations)


def _search_batch(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    y: torch.Tensor,
    basis: torch.Tensor,
    *,
    max_iter: int,
    overshoot: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = x0.shape[0]
    flat0 = x0.reshape(b, -1)
    r = torch.zeros_like(flat0)
    active = torch.ones(b, dtype=torch.bool)
    crossed = torch.zeros(b, dtype=torch.bool)
    steps = torch.zeros(b, dtype=torch.long)
    start_correct = torch.zeros(b, dtype=torch.bool)
    for step in range(max_iter + 1):
        idx = active.nonzero().flatten()  # only rows still searching go through the model
        x = (flat0[idx] + (1.0 + overshoot) * r[idx]).reshape(-1, *x0.shape[1:])
        x.requires_grad_(True)
        scores = check_model_output(classifier(x), idx.numel())
        values = scores.detach().cpu()
        pred = values.argmax(dim=1)
        if step == 0:
            start_correct = pred == y
        correct, truth = start_correct[idx], y[idx]
        done = torch.where(correct, pred != truth, pred == truth)
        crossed[idx[done]] = True
        active[idx[done]] = False
        if step == max_iter or not bool(active.any()):
            break
        # g = f_a - f_b >= 0: (own, runner-up) if correct at the start, else (prediction, true).
        local = torch.arange(idx.numel())
        masked = values.clone()
        masked[local, truth] = -torch.inf
        a = torch.where(correct, truth, pred).to(scores.device)
        other = torch.where(correct, masked.argmax(dim=1), truth).to(scores.device)
        rows = local.to(scores.device)
        g = scores[rows, a] - scores[rows, other]
        keep = ~done
        (grad,) = torch.autograd.grad(g[keep.to(g.device)].sum(), x)
        coords = grad.detach().cpu().reshape(idx.numel(), -1)[keep] @ basis  # (k, m) = Vᵀ∇g
        norm2 = (coords**2).sum(dim=1)
        moving = norm2 > _TINY  # a vanishing projected gradient: the search is stuck
        active[idx[keep][~moving]] = False
        target = idx[keep][moving]
        step_size = g.detach().cpu()[keep][moving] / norm2[moving]
        r[target] -= step_size[:, None] * (coords[moving] @ basis.T)
        steps[target] += 1
    distance = r.norm(dim=1).double()
    distance = torch.where(start_correct, distance, -distance)
    return distance.numpy(), crossed.numpy(), steps.numpy()


def _compute(
    inputs: ScoreInputs,
    *,
    samples: int,
    pca_samples: int,
    variance: float,
    components: int,
    max_iter: int,
    overshoot: float,
    batch_size: int,
    c: float,
    normalise: bool,
) -> ScoreOutput:
    assert inputs.images is not None and inputs.model is not None
    began = time.perf_counter()
    labels = check_labels(inputs.labels, min_per_class=1)
    n = labels.shape[0]
    images, model, features = image_space_inputs(inputs, labels, batch_size=batch_size)
    keys = content_keys(images, seed=inputs.seed)
    subset = content_order_subset(keys, labels, size=samples)
    rest = np.setdiff1d(np.arange(n), subset)
    fit_rows = rest if _every_class_twice(labels, rest) else np.arange(n)
    probe = fit_linear_probe(features[fit_rows], labels[fit_rows], c=c)
    head = probe.as_torch()

    def classifier(batch: torch.Tensor) -> torch.Tensor:
        return head(check_model_output(model(batch), batch.shape[0]))

    pca_keys = content_keys(images, seed=inputs.seed + 7)
    pca_rows = content_order_subset(pca_keys, labels, size=pca_samples)
    flat = images[pca_rows].reshape(pca_rows.size, -1)
    basis = principal_directions(flat, variance=variance, components=components)
    scale = total_std(flat) if normalise else 1.0
    result = constrained_margins(
        classifier,
        images[subset],
        labels[subset],
        basis,
        max_iter=max_iter,
        overshoot=overshoot,
        batch_size=batch_size,
    )
    measured = result.distances[result.crossed] / scale
    not_crossed = int((~result.crossed).sum())
    # When nothing crossed, the distances travelled are lower bounds of the margins.
    value = float(np.median(measured if measured.size else result.distances / scale))
    q1, q3 = np.percentile(measured, [25, 75]) if measured.size else (value, value)
    details = {
        "samples": int(subset.size),
        "sample_ids": subset.tolist(),
        "q1": float(q1),
        "q3": float(q3),
        "negative_fraction": float((result.distances < 0).mean()),
        "not_crossed": not_crossed,
        "value_is_lower_bound": not measured.size,
        "iterations_total": int(result.iterations.sum()),
        "iterations_mean": float(result.iterations.mean()),
        "pca_components": int(basis.shape[1]),
        "pca_images": int(pca_rows.size),
        "input_scale": scale,
        "seconds": round(time.perf_counter() - began, 3),
    }
    return ScoreOutput(value=value, details=details)


def _every_class_twice(labels: np.ndarray, rows: np.ndarray) -> bool:
    counts = np.bincount(labels[rows], minlength=int(labels.max()) + 1)
    return bool(counts.min() >= 2)


register_score(
    ScoreSpec(
        name="constrained_margin",
        family="margin",
        compute=_compute,
        needs=frozenset({"images", "model"}),
        direction="higher",
        paper=(
            "Mouton, Theunissen, Davel 2024, Input Margins Can Predict Generalization Too "
            "(AAAI; arXiv 2308.15466)"
        ),
        cost="expensive",
        params={
            "samples": 100,
            "pca_samples": 500,
            "variance": 0.99,
            "components": 0,
            "max_iter": 50,
            "overshoot": 0.02,
            "batch_size": 16,
            "c": 1.0,
            "normalise": True,
        },
        description=(
            "Median DeepFool distance of input images to the model+probe boundary, searched "
            "only along the leading principal directions of the target images."
        ),
    )
)
