"""Weights load with every shape checked; real ImageNet weights give known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zoorank.errors import InvalidInputError
from zoorank.features.preprocess import model_preprocessing
from zoorank.zoo import create_model, get_model_spec, parse_model_ref
from zoorank.zoo.load import match_state_dict, weights_digest
from zoorank.zoo.specs import OFFLINE_WEIGHTS


@pytest.fixture(scope="module")
def sample_photos():
    from sklearn.datasets import load_sample_images

    return np.stack([image[:420, :420] for image in load_sample_images().images])  # china, flower


@pytest.mark.parametrize("arch", list(OFFLINE_WEIGHTS))
def test_offline_weights_recognise_a_photo(arch, sample_photos):
    """scikit-learn's china.jpg shows a Chinese palace: ImageNet class 698 ('palace') must be
    in every real model's top 3; a random-init twin is near uniform."""
    model = create_model(get_model_spec(arch))
    with torch.no_grad():
        probs = model(model_preprocessing(model)(sample_photos)).softmax(-1)
    assert 698 in probs[0].topk(3).indices.tolist()
    twin = create_model(get_model_spec(f"{arch}@random"))
    with torch.no_grad():
        random_probs = twin(model_preprocessing(twin)(sample_photos)).softmax(-1)
    assert random_probs.max() < 0.5 < probs[0].max() or probs[0, 698] > 10 * random_probs[0, 698]


def test_random_init_is_seeded():
    a = create_model(get_model_spec("mobilenetv2_100@random")).state_dict()
    b = create_model(get_model_spec("mobilenetv2_100@random")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_file_weights_round_trip_and_shape_mismatch(tmp_path):
    source = create_model(parse_model_ref("resnet10t@random"))
    state = {k: v.clone() + 0.5 for k, v in source.state_dict().items() if v.is_floating_point()}
    good = tmp_path / "r10.safetensors"
    save_file(state, str(good))
    loaded = create_model(parse_model_ref(f"resnet10t@file:{good}"))
    assert torch.equal(loaded.state_dict()["fc.weight"], state["fc.weight"])
    assert weights_digest(parse_model_ref(f"resnet10t@file:{good}")) != weights_digest(
        parse_model_ref("resnet10t@random")
    )

    bad = dict(state)
    bad["fc.weight"] = torch.zeros(10, 512)
    bad_path = tmp_path / "bad.safetensors"
    save_file(bad, str(bad_path))
    with pytest.raises(InvalidInputError, match=r"fc.weight: \(10, 512\) vs \(1000, 512\)"):
        create_model(parse_model_ref(f"resnet10t@file:{bad_path}"))


def test_position_mapping_needs_equal_counts():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    renamed = {
        "a.w": torch.ones(3, 2),
        "a.b": torch.ones(3),
        "b.w": torch.ones(1, 3),
        "b.b": torch.ones(1),
    }
    mapped = match_state_dict(model, renamed, source="test")
    assert list(mapped) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(InvalidInputError, match="3 tensors, the model has 4"):
        match_state_dict(model, dict(list(renamed.items())[:3]), source="test")


def test_pth_is_read_with_weights_only(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.ones(1)}, "code": object()}, path)  # pickled object
    with pytest.raises(InvalidInputError, match=r"evil.pth carries pickled objects .*weights_only=True"):
        create_model(parse_model_ref(f"resnet10t@file:{path}"))
