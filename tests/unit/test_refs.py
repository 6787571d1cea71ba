"""The one parser each for dataset and model references, tested with tables."""

from __future__ import annotations

import pytest

from zoorank.data.refs import DatasetRef, parse_dataset_ref, resolve_under_roots
from zoorank.errors import InvalidInputError, UnknownNameError
from zoorank.zoo import get_model_spec, parse_model_ref


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("builtin:digits", DatasetRef("builtin", "digits")),
        ("builtin:fashion-mnist", DatasetRef("builtin", "fashion-mnist")),
        ("folder:/data/cats", DatasetRef("folder", "/data/cats")),
        ("npz:set.npz", DatasetRef("npz", "set.npz")),
        ("upload:0123abcd", DatasetRef("upload", "0123abcd")),
        ("folder:a:b", DatasetRef("folder", "a:b")),
    ],
)
def test_dataset_refs_accepted(ref, expected):
    assert parse_dataset_ref(ref) == expected
    assert str(parse_dataset_ref(ref)) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "digits",
        "",
        "builtin:",
        "http:x",
        "builtin:Digits!",
        "upload:../x",
        "upload:XYZ",
        "folder:\x00",
        ":x",
    ],
)
def test_dataset_refs_refused(ref):
    with pytest.raises(InvalidInputError) as info:
        parse_dataset_ref(ref)
    assert info.value.field == "dataset"


def test_paths_must_stay_under_data_roots(tmp_path):
    root = tmp_path / "root"
    (root / "set").mkdir(parents=True)
    assert resolve_under_roots(str(root / "set"), [root]) == (root / "set").resolve()
    for escape in (str(root / ".." / "x"), "/etc", str(tmp_path)):
        with pytest.raises(InvalidInputError, match="outside the allowed data roots"):
            resolve_under_roots(escape, [root])
    (root / "link").symlink_to(tmp_path)  # a symlink out of the root is an escape too
    with pytest.raises(InvalidInputError):
        resolve_under_roots(str(root / "link"), [root])
    with pytest.raises(InvalidInputError, match="no data roots"):
        resolve_under_roots(str(root), [])


@pytest.mark.parametrize(
    ("ref", "arch", "weights"),
    [
        ("resnet18@random", "resnet18", "random"),
        ("mobilenetv2_100@offline", "mobilenetv2_100", "offline"),
        ("resnet18@timm", "resnet18", "timm"),
        ("resnet18@timm:timm/resnet18.a1_in1k", "resnet18", "timm:timm/resnet18.a1_in1k"),
        ("resnet18@file:/w/r18.safetensors", "resnet18", "file:/w/r18.safetensors"),
    ],
)
def test_model_refs_accepted(ref, arch, weights):
    spec = parse_model_ref(ref)
    assert (spec.architecture, spec.weights, spec.name) == (arch, weights, ref)


@pytest.mark.parametrize(
    "ref",
    [
        "resnet18",
        "resnet18@",
        "resnet18@cloud",
        "resnet18@offline",
        "Res Net@random",
        "a@b@c",
        "resnet18@file:/w/r18.bin",
        "no_such_arch_xyz@random",
    ],
)
def test_model_refs_refused(ref):
    with pytest.raises(InvalidInputError):
        parse_model_ref(ref)


def test_zoo_names_and_unknown_model():
    assert get_model_spec("tf_efficientnet_lite0").weights == "offline"
    assert get_model_spec("mobilenetv2_100@random").is_random
    with pytest.raises(UnknownNameError, match="unknown model"):
        get_model_spec("resnet9000")
