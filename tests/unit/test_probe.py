"""Linear-probe accuracy against cases whose answer is known without the score's own code."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from zoorank.scores._baseline_math import content_order
from zoorank.scores.probe import linear_probe_accuracy


def test_matches_scikit_learn_cross_validation_on_the_same_folds():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 8)) + 0.8 * np.eye(8)[labels]  # overlapping classes
    order = content_order(features)
    x, y = features[order], labels[order]
    expected = []
    for train, test in StratifiedKFold(n_splits=3, shuffle=True, random_state=0).split(x, y):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(
            x[train], y[train]
        )
        expected.append(float((probe.predict(x[test]) == y[test]).mean()))
    value, per_fold = linear_probe_accuracy(features, labels, folds=3, seed=0)
    assert per_fold == pytest.approx(expected, abs=1e-12)
    assert value == pytest.approx(np.mean(expected))
    assert 0.4 < value < 1.0  # the case is neither trivial nor hopeless


def test_separable_classes_score_one_and_features_without_information_score_chance():
    labels = np.repeat([0, 1], 12)
    separable = np.c_[labels * 10.0, np.zeros(24)] + np.random.default_rng(0).normal(0, 0.1, (24, 2))
    assert linear_probe_accuracy(separable, labels)[0] == 1.0
    # identical rows: every fold predicts one class for all, so exactly half is right
    assert linear_probe_accuracy(np.ones((24, 3)), labels, folds=2)[0] == pytest.approx(0.5)
