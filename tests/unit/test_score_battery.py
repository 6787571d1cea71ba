"""The common battery, run over every registered score that reads only arrays.

Every score whose ``needs`` are within {features, logits, meta} must be finite,
deterministic, invariant to the order of the samples and to the names of the classes,
point the way its ``direction`` says on a separable-vs-random pair, refuse NaN and inf with
:class:`InvalidInputError`, and give a finite value on the edge shapes below. Scores that
need taps, images or a model are tested elsewhere and left out here by their ``needs``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from zoorank.errors import InvalidInputError
from zoorank.scores import ScoreInputs, get_score, list_scores

ARRAY_NEEDS = frozenset({"features", "logits", "meta"})
SCORES = [name for name in list_scores() if get_score(name).needs <= ARRAY_NEEDS]
META = {"imagenet_top1": 75.0}

# (score, edge) pairs that refuse the edge case with a clear InvalidInputError by design.
EXPECTED_REFUSALS: dict[tuple[str, str], str] = {}

# (test, score) pairs known to fail, with the reason; each is a bug to fix in the score.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def _known(request: pytest.FixtureRequest, test: str, name: str) -> None:
    """Mark a known failure as xfail; the test still runs and shows XPASS once fixed."""
    reason = KNOWN_FAILURES.get((test, name))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))


def _problem(
    seed: int,
    sizes: list[int],
    d: int,
    *,
    separation: float = 3.0,
    source_classes: int = 10,
) -> ScoreInputs:
    """Gaussian blobs of the given class sizes, logits that mostly name the class."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    n = labels.shape[0]
    centres = rng.standard_normal((len(sizes), d))
    features = rng.standard_normal((n, d)) + separation * centres[labels]
    source = labels % source_classes
    logits = rng.standard_normal((n, source_classes)) + 2.0 * separation * np.eye(source_classes)[source]
    return ScoreInputs(labels=labels, features=features, logits=logits, meta=dict(META))


def _inputs_for(name: str, inputs: ScoreInputs) -> ScoreInputs:
    needs = get_score(name).needs
    return ScoreInputs(
        labels=inputs.labels,
        features=inputs.features if "features" in needs else None,
        logits=inputs.logits if "logits" in needs else None,
        meta=inputs.meta if "meta" in needs else None,
        seed=inputs.seed,
    )


def _value(name: str, inputs: ScoreInputs) -> float:
    return get_score(name)(_inputs_for(name, inputs)).value


BASE = _problem(0, [25, 25, 25], 12, separation=1.0)


def _reads_arrays(name: str) -> bool:
    return bool(get_score(name).needs & {"features", "logits"})


def test_battery_covers_the_baselines() -> None:
    expected = {"logme", "leep", "nleep", "nce", "hscore", "shrinkage_hscore", "gbc"}
    expected |= {"transrate", "sfda", "ncti", "knn", "imagenet_top1", "linear_probe"}
    assert expected <= set(SCORES)


@pytest.mark.parametrize("name", SCORES)
def test_finite_and_deterministic(name: str) -> None:
    first = _value(name, BASE)
    assert np.isfinite(first)
    assert _value(name, BASE) == first


@pytest.mark.parametrize("name", SCORES)
def test_invariant_to_sample_order(name: str) -> None:
    order = np.random.default_rng(1).permutation(BASE.labels.shape[0])
    shuffled = ScoreInputs(
        labels=BASE.labels[order],
        features=BASE.features[order],  # type: ignore[index]
        logits=BASE.logits[order],  # type: ignore[index]
        meta=BASE.meta,
    )
    assert _value(name, shuffled) == pytest.approx(_value(name, BASE), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", SCORES)
def test_invariant_to_class_names(request: pytest.FixtureRequest, name: str) -> None:
    _known(request, "class_names", name)
    renamed = replace(BASE, labels=np.array([17, -4, 3])[BASE.labels])
    assert _value(name, renamed) == pytest.approx(_value(name, BASE), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", SCORES)
def test_separable_beats_random_labels(name: str) -> None:
    separable = _problem(2, [30, 30, 30, 30], 8, separation=3.0)
    random = replace(separable, labels=np.random.default_rng(3).permutation(separable.labels))
    sep, rnd = _value(name, separable), _value(name, random)
    if not _reads_arrays(name):
        assert sep == rnd  # a static prior ignores the target data
    elif get_score(name).direction == "higher":
        assert sep > rnd
    else:
        assert sep < rnd


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", SCORES)
def test_refuses_non_finite_input(name: str, bad: float) -> None:
    needs = get_score(name).needs
    if not _reads_arrays(name):
        broken = replace(BASE, meta={"imagenet_top1": bad})
    elif "features" in needs:
        features = BASE.features.copy()  # type: ignore[union-attr]
        features[5, 2] = bad
        broken = replace(BASE, features=features)
    else:
        logits = BASE.logits.copy()  # type: ignore[union-attr]
        logits[5, 2] = bad
        broken = replace(BASE, logits=logits)
    with pytest.raises(InvalidInputError):
        _value(name, broken)


def _edge(kind: str) -> ScoreInputs:
    if kind == "two_classes":
        return _problem(4, [20, 20], 6, separation=1.0)
    if kind == "hundred_classes":
        return _problem(5, [3] * 100, 16, separation=1.0, source_classes=120)
    if kind == "d_greater_than_n":
        return _problem(6, [10, 10, 10], 100, separation=1.0, source_classes=200)
    if kind == "class_with_two_samples":
        return _problem(7, [20, 20, 2], 6, separation=1.0)
    base = _problem(8, [15, 15, 15], 6, separation=1.0)
    if kind == "duplicate_rows":
        twice = np.concatenate([np.arange(45), np.arange(45)])
        return ScoreInputs(
            labels=base.labels[twice],
            features=base.features[twice],  # type: ignore[index]
            logits=base.logits[twice],  # type: ignore[index]
            meta=base.meta,
        )
    assert kind == "duplicate_columns"
    return replace(base, features=np.concatenate([base.features, base.features], axis=1))


EDGES = [
    "two_classes",
    "hundred_classes",
    "d_greater_than_n",
    "class_with_two_samples",
    "duplicate_rows",
    "duplicate_columns",
]


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("name", SCORES)
def test_edge_shapes(name: str, edge: str) -> None:
    inputs = _edge(edge)
    if (name, edge) in EXPECTED_REFUSALS:
        with pytest.raises(InvalidInputError):
            _value(name, inputs)
        return
    assert np.isfinite(_value(name, inputs))
