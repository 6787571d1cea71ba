"""Tap points per timm family: the authors' L = 11 on ResNet-18, stem + every block elsewhere,
hooks firing in the listed order, and distinct pre-/post-activation stem maps."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from zoorank.errors import InvalidInputError
from zoorank.features.taps import tap_family, tap_points

os.environ.setdefault("HF_HUB_OFFLINE", "1")
timm = pytest.importorskip("timm")

EXPECTED = {
    # name: (family, number of taps, first taps, last tap)
    "resnet18": ("resnet", 11, ["conv1", "bn1", "act1", "layer1.0"], "layer4.1"),
    "tf_efficientnet_lite0": (
        "efficientnet",
        3 + 16,
        ["conv_stem", "bn1.drop", "bn1.act", "blocks.0.0"],
        "blocks.6.0",
    ),
    "mobilenetv2_100": (
        "efficientnet",
        3 + 17,
        ["conv_stem", "bn1.drop", "bn1.act", "blocks.0.0"],
        "blocks.6.0",
    ),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def model(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    return request.param, timm.create_model(request.param, pretrained=False).eval()


def test_tap_points_per_family(model: tuple[str, nn.Module]) -> None:
    name, net = model
    family, count, first, last = EXPECTED[name]
    points = tap_points(net)
    assert tap_family(net).name == family
    assert len(points) == count
    assert points[: len(first)] == first
    assert points[-1] == last
    assert len(set(points)) == len(points)
    assert set(points) <= dict(net.named_modules()).keys()


def test_resnet18_matches_the_authors_eleven_points() -> None:
    net = timm.create_model("resnet18", pretrained=False)
    blocks = [f"layer{k}.{j}" for k in range(1, 5) for j in range(2)]
    assert tap_points(net) == ["conv1", "bn1", "act1", *blocks]


def test_hooks_fire_in_listed_order_with_spatial_maps(model: tuple[str, nn.Module]) -> None:
    """Taps are in network (execution) order, each a (n, c, h, w) map; the hooks copy their
    output, which is what makes the stem norm map differ from the in-place activation."""
    _, net = model
    points = tap_points(net)
    modules = dict(net.named_modules())
    fired: list[str] = []
    maps: dict[str, np.ndarray] = {}

    def hook_for(point: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            fired.append(point)
            maps[point] = output.detach().clone().numpy()

        return hook

    handles = [modules[p].register_forward_hook(hook_for(p)) for p in points]
    try:
        with torch.inference_mode():
            net(torch.randn(2, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert fired == points
    assert all(maps[p].ndim == 4 and maps[p].shape[0] == 2 for p in points)
    norm, act = points[1], points[2]
    assert (maps[norm] < 0).any()  # before the activation
    assert (maps[act] >= 0).all()  # after ReLU / ReLU6


def test_other_families() -> None:
    convnext = timm.create_model("convnext_atto", pretrained=False)
    assert tap_family(convnext).name == "stages"
    points = tap_points(convnext)
    assert points[0] == "stem" and points[1] == "stages.0.blocks.0" and len(points) == 1 + 12
    vgg = timm.create_model("vgg11", pretrained=False)
    assert tap_family(vgg).name == "feature_info"
    assert tap_points(vgg)[0] == "features.0"


def test_model_without_convolutions_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="cannot find layer taps"):
        tap_points(nn.Sequential(nn.Linear(4, 4)))
