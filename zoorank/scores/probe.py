"""Linear-probe accuracy: held-out accuracy of a multinomial logistic regression on features.

A direct, model-agnostic proxy for linear transfer (Kornblith et al. 2019, "Do better
ImageNet models transfer better?", linear evaluation protocol): standardise the pre-logit
features, fit an L2-regularised logistic regression on k-1 folds, score the held-out fold,
average over a stratified, seeded k-fold split. The folds are drawn over the rows sorted by
content, so the accuracy does not depend on the order in which the samples come.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import content_order
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score


def linear_probe_accuracy(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    folds: int = 3,
    c: float = 1.0,
    seed: int = 0,
) -> tuple[float, list[float]]:
    """Mean held-out accuracy over ``folds`` stratified folds, and the per-fold accuracies.

    The folds are capped at the smallest class's size (at least 2).

    Raises:
        InvalidInputError: a class with fewer than 2 samples, non-finite features.
    """
    if folds < 2:
        raise InvalidInputError("folds must be at least 2", field="params")
    labels_n = check_labels(labels_n, min_per_class=2)
    x = check_matrix(features_nd, labels_n.shape[0])
    # A class with fewer samples than folds caps the folds (every fold must see every class).
    folds = min(folds, int(np.bincount(labels_n).min()))
    order = content_order(x)  # folds depend on the rows' content, not their positions
    x, labels_n = x[order], labels_n[order]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracies = []
    for train, test in splitter.split(x, labels_n):
        x_train, x_test = _row_space(*_standardise(x[train], x[test]))
        probe = LogisticRegression(C=c, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(x_train, labels_n[train])
        accuracies.append(float((probe.predict(x_test) == labels_n[test]).mean()))
    return float(np.mean(accuracies)), accuracies


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test)


def _row_space(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in the orthonormal basis of the training rows' span, when d > n_train.

    An L2-penalised logistic regression's weights lie in the span of its training rows
    (representer theorem), and the basis is orthonormal, so the fit, the penalty and every
    test logit are unchanged -- but the solver works in n_train dimensions instead of d.
    """
    n, d = x_train.shape
    if d <= n:
        return x_train, x_test
    _, s, vt = np.linalg.svd(x_train, full_matrices=False)
    basis = vt[s > s[0] * max(n, d) * np.finfo(float).eps]
    return x_train @ basis.T, x_test @ basis.T


def _compute(inputs: ScoreInputs, *, folds: int, c: float) -> ScoreOutput:
    assert inputs.features is not None
    mean, per_fold = linear_probe_accuracy(inputs.features, inputs.labels, folds=folds, c=c, seed=inputs.seed)
    return ScoreOutput(value=mean, details={"fold_accuracies": per_fold})


register_score(
    ScoreSpec(
        name="linear_probe",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Kornblith, Shlens, Le 2019, Do Better ImageNet Models Transfer Better? (CVPR)",
        cost="moderate",
        params={"folds": 3, "c": 1.0},
        description="Stratified k-fold accuracy of a logistic-regression probe on pre-logits.",
    )
)
