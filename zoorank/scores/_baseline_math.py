"""Shared arithmetic of the transferability baselines (not a score module).

* :func:`softmax` -- row-wise, in float64, stable for large logits.
* :func:`one_hot` -- ``(n, C)`` float indicator of ``0..C-1`` labels.
* :func:`class_means` -- ``(C, d)`` per-class means and the class counts.
* :func:`principal_components` -- PCA scores and explained variances from one symmetric
  eigendecomposition of the smaller Gram matrix (``d × d`` when ``n ≥ d``, ``n × n``
  otherwise), which is both faster and deterministic compared with a full or randomised SVD.
* :func:`content_order` -- a permutation of the rows that depends only on their content, for
  the few scores whose optimiser depends on the order of the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from zoorank.errors import InvalidInputError


def softmax(logits_nk: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(n, k)`` logits, float64."""
    shifted = logits_nk - logits_nk.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def one_hot(labels_n: np.ndarray, classes: int | None = None) -> np.ndarray:
    """``(n, C)`` float64 indicator matrix of labels in ``0..C-1``."""
    classes = int(labels_n.max()) + 1 if classes is None else classes
    out = np.zeros((labels_n.shape[0], classes))
    out[np.arange(labels_n.shape[0]), labels_n] = 1.0
    return out


def class_means(x_nd: np.ndarray, labels_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means ``(C, d)`` and counts ``(C,)`` for labels in ``0..C-1``."""
    counts = np.bincount(labels_n).astype(np.float64)
    sums = one_hot(labels_n, counts.shape[0]).T @ x_nd
    return sums / counts[:, None], counts


@dataclass(frozen=True)
class PrincipalComponents:
    """PCA of ``n`` centred rows: ``scores (n, k)`` and ``variance (k,)`` (``1/(n−1)``).

    ``total_variance`` is the sum of all ``min(n, d)`` component variances (the trace of the
    sample covariance), so ``variance / total_variance`` is the explained-variance ratio.
    """

    scores: np.ndarray
    variance: np.ndarray
    total_variance: float


def principal_components(
    x_nd: np.ndarray, *, components: int | None = None, variance_ratio: float | None = None
) -> PrincipalComponents:
    """Principal-component scores of ``x_nd``, largest variance first.

    ``components`` is a count (capped at ``min(n, d)``; ``None`` for all); ``variance_ratio``
    keeps the fewest components whose explained-variance ratio reaches it, as scikit-learn's
    ``PCA(n_components=0.8)``, but no more than ``components``. Component signs are fixed so
    that each score column's entry of largest magnitude is positive (independent of the order
    of the rows).

    Raises:
        InvalidInputError: the features have no variance at all.
    """
    n, d = x_nd.shape
    xc = x_nd - x_nd.mean(axis=0)
    gram = xc.T @ xc if d <= n else xc @ xc.T
    size = gram.shape[0]
    total = float(np.trace(gram))
    if total <= 0.0:
        raise InvalidInputError(
            "features have zero variance (every row is the same); nothing to score",
            field="features",
        )
    keep = min(n, d) if components is None else max(1, min(components, n, d))
    if variance_ratio is not None:
        spectrum = np.clip(scipy.linalg.eigvalsh(gram)[::-1], 0.0, None)
        cumulative = np.cumsum(spectrum) / spectrum.sum()
        keep = min(keep, int(np.searchsorted(cumulative, variance_ratio, side="left")) + 1)
    # Only the leading `keep` eigenpairs: much cheaper than all of them when keep ≪ size.
    eigenvalues, vectors = scipy.linalg.eigh(gram, subset_by_index=[size - keep, size - 1])
    eigenvalues = np.clip(eigenvalues[::-1], 0.0, None)
    top = vectors[:, ::-1]
    # For d > n the eigenvectors are U of Xc = U S Vᵀ, and the scores Xc V are U S.
    scores = xc @ top if d <= n else top * np.sqrt(eigenvalues)
    largest = np.abs(scores).argmax(axis=0)
    scores *= np.where(scores[largest, np.arange(keep)] < 0, -1.0, 1.0)
    denominator = max(n - 1, 1)
    return PrincipalComponents(
        scores=scores, variance=eigenvalues / denominator, total_variance=total / denominator
    )


def content_order(x_nd: np.ndarray) -> np.ndarray:
    """Row permutation sorting rows lexicographically by value (ties: identical rows)."""
    return np.lexsort(x_nd.T[::-1])
