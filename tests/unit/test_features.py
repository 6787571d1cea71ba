"""One forward pass -> pre-logits, logits and taps; the cache makes a second job pass-free."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoorank.data import load_dataset
from zoorank.features import extract
from zoorank.features.cache import FeatureCache
from zoorank.features.extract import extract_features
from zoorank.features.preprocess import model_preprocessing
from zoorank.features.taps import tap_points
from zoorank.rank import get_features, prepare_dataset
from zoorank.zoo import create_model, get_model_spec


@pytest.mark.slow
def test_one_pass_matches_plain_forward():
    model = create_model(get_model_spec("mobilenetv2_100"))
    data = load_dataset("builtin:digits")
    rows = np.arange(12)
    prep = model_preprocessing(model, 32)
    features = extract_features(
        model, data.read, rows, prep, tap_rows=np.array([1, 5]), batch_size=5, device="cpu"
    )
    with torch.no_grad():
        logits = model(prep(data.read(rows))).numpy()
    np.testing.assert_allclose(features.logits, logits, rtol=1e-4, atol=1e-4)
    assert features.prelogits.shape == (12, 1280)
    names = tap_points(model)
    assert list(features.taps) == names
    assert all(maps.shape[0] == 2 for maps in features.taps.values())
    # the stem conv tap of row 5 equals a direct call of the stem on that image
    with torch.no_grad():
        stem = model.conv_stem(prep(data.read(rows[[5]]))).numpy()
    np.testing.assert_allclose(features.taps[names[0]][1], stem[0], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_second_job_on_same_data_does_no_forward_pass(tmp_path, small_options, monkeypatch):
    batches = []
    real = extract.prelogits_and_logits

    def counted(model, x):
        batches.append(x.shape[0])
        return real(model, x)

    monkeypatch.setattr(extract, "prelogits_and_logits", counted)
    cache = FeatureCache(tmp_path)
    prepared = prepare_dataset("builtin:digits", small_options)
    spec = get_model_spec("mobilenetv2_100@random")
    before = len(batches)
    first, _, model = get_features(prepared, spec, small_options, cache)
    passes = len(batches) - before
    assert passes == int(np.ceil(len(prepared.rows) / small_options.batch_size)) and model is not None
    second, _, model_again = get_features(prepared, spec, small_options, cache)
    assert len(batches) - before == passes  # no new forward pass
    assert second.from_cache and model_again is None  # the model was not even built
    np.testing.assert_array_equal(first.prelogits, second.prelogits)
    assert list(first.taps) == list(second.taps)
    # a different sample (other seed) is a different key
    other = prepare_dataset("builtin:digits", type(small_options)(**{**small_options.to_dict(), "seed": 1}))
    get_features(other, spec, small_options, cache)
    assert len(batches) - before == 2 * passes


def test_architecture_preprocessing_equals_the_models_own():
    from zoorank.features.preprocess import architecture_preprocessing

    for arch in ("tf_efficientnet_lite2", "mobilenetv2_100", "resnet10t"):
        model = create_model(get_model_spec(f"{arch}@random"))
        assert architecture_preprocessing(arch, 48) == model_preprocessing(model, 48)
        assert architecture_preprocessing(arch) == model_preprocessing(model)
