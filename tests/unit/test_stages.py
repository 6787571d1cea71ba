"""The ranking split by resource (the service's gpu and cpu queues): the "device" stage makes
the forward passes and the scores that need the model; the "arrays" stage the others from the
cache, with no forward pass of its own."""

from __future__ import annotations

import math

import pytest

from zoorank import rank as pipeline
from zoorank.features.cache import FeatureCache
from zoorank.rank import RankOptions, needs_device, prepare_dataset, score_model
from zoorank.uncertainty import resampled
from zoorank.zoo import get_model_spec

SCORES = ["logme", "leep", "betti_slope", "translation_sensitivity"]
# betti_slope's taps at another input size: a second forward pass the device stage must make
PARAMS = {"betti_slope": {"input_size": 48}}


@pytest.fixture(scope="module")
def prepared():
    options = RankOptions(samples_per_class=6, input_size=32, tap_images_per_class=2, score_params=PARAMS)
    return prepare_dataset("builtin:digits", options), options


def test_which_scores_need_the_device():
    assert [n for n in SCORES if needs_device(n)] == ["translation_sensitivity"]


@pytest.mark.slow
def test_the_two_stages_give_what_one_pass_gives_and_the_second_makes_no_forward_pass(
    prepared, tmp_path, monkeypatch
):
    data, options = prepared
    spec = get_model_spec("mobilenetv2_100@random")
    monkeypatch.setattr(
        pipeline, "budgeted", lambda candidates, *a, **k: [c for c in candidates if resampled(c)]
    )
    whole = score_model(data, spec, SCORES, options, cache=FeatureCache(tmp_path / "one"))
    shared = FeatureCache(tmp_path / "shared")
    device = score_model(data, spec, SCORES, options, cache=shared, stage="device")
    assert set(device.scores) == {"translation_sensitivity"} and not device.from_cache

    passes = []
    real = pipeline.extract_features
    monkeypatch.setattr(pipeline, "extract_features", lambda *a, **k: passes.append(1) or real(*a, **k))
    monkeypatch.setattr(
        pipeline, "create_model", lambda spec: pytest.fail("the arrays stage built the model")
    )
    arrays = score_model(data, spec, SCORES, options, cache=shared, stage="arrays")
    assert passes == [] and arrays.from_cache
    assert set(arrays.scores) == {"logme", "leep", "betti_slope"}
    for name, record in {**device.scores, **arrays.scores}.items():
        assert record.error is None, (name, record.error)
        assert math.isclose(record.value, whole.scores[name].value, rel_tol=1e-6, abs_tol=1e-9), name
    # the bootstrap of the policy's array scores is the arrays stage's (time budget lifted,
    # so that what is bootstrapped does not depend on how busy the machine is)
    bootstrapped = {n for n, r in arrays.scores.items() if "bootstrap" in r.details}
    assert (
        bootstrapped == {n for n, r in whole.scores.items() if "bootstrap" in r.details} == {"logme", "leep"}
    )
    assert not any("bootstrap" in r.details for r in device.scores.values())
