"""k-NN accuracy: leave-one-out k-nearest-neighbour accuracy of the pre-logit features.

A non-parametric proxy for how well the target classes are separated in feature space (the
k-NN evaluation of self-supervised learning, e.g. Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", CVPR, with cosine similarity).

For each sample ``i`` its neighbours are the ``k`` other samples most cosine-similar to it,
plus any sample tied with the ``k``-th (so the result does not depend on the order of the
samples); each neighbour votes for its class, ties between classes go to the class with
the larger summed similarity, and a tie that remains counts as ``1/m`` correct for ``m``
tied classes. The score is the mean correctness over all samples. Rows of zero norm have
similarity 0 to every sample. Similarities are rounded to 12 decimals before comparison, so
round-off does not decide ties between duplicated samples.
"""

from __future__ import annotations

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import one_hot
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

_BLOCK_ROWS = 512


def knn_accuracy(features_nd: np.ndarray, labels_n: np.ndarray, *, k: int = 5) -> float:
    """Leave-one-out cosine k-NN accuracy of features ``(n, d)`` for labels ``(n,)``.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.
        k: neighbours per sample, ``1 ≤ k < n``.

    Raises:
        InvalidInputError: non-finite features, shape mismatch, < 2 classes, bad ``k``.

    Example:
        >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> knn_accuracy(x, np.array([0, 0, 1, 1]), k=1)
        1.0
    """
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    n = labels.shape[0]
    if not 1 <= k < n:
        raise InvalidInputError(f"k must be between 1 and n − 1 = {n - 1}, got {k}", field="params")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    votes_onehot = one_hot(labels)
    correct = np.empty(n)
    for start in range(0, n, _BLOCK_ROWS):
        rows = np.arange(start, min(start + _BLOCK_ROWS, n))
        similarity = np.round(unit[rows] @ unit.T, 12)
        similarity[np.arange(rows.size), rows] = -np.inf  # leave the sample itself out
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1 : k]
        neighbours = similarity >= kth
        votes = neighbours.astype(np.float64) @ votes_onehot
        summed = np.where(neighbours, similarity, 0.0) @ votes_onehot
        candidates = votes == votes.max(axis=1, keepdims=True)
        summed = np.where(candidates, summed, -np.inf)
        winners = candidates & (summed == summed.max(axis=1, keepdims=True))
        correct[rows] = winners[np.arange(rows.size), labels[rows]] / winners.sum(axis=1)
    return float(correct.mean())


def _compute(inputs: ScoreInputs, *, k: int) -> ScoreOutput:
    assert inputs.features is not None
    return ScoreOutput(value=knn_accuracy(inputs.features, inputs.labels, k=k))


register_score(
    ScoreSpec(
        name="knn",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Wu et al. 2018, Unsupervised Feature Learning via Non-Parametric Instance "
        "Discrimination (CVPR), k-NN evaluation",
        cost="cheap",
        params={"k": 5},
        description="Leave-one-out k-NN accuracy on pre-logits with cosine similarity.",
    )
)
