"""Properties of the one parser each for dataset and model references (issue 13 §3), beside the
tables of tests/unit/test_refs.py: any string parses to a reference that round-trips or is
refused with the project's own error naming the field (never another exception); a path never
resolves outside the data roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zoorank.data.refs import parse_dataset_ref, resolve_under_roots
from zoorank.errors import InvalidInputError
from zoorank.zoo import get_model_spec, parse_model_ref

# Pieces that matter to these parsers, mixed with arbitrary text (surrogates and NUL included).
SEGMENTS = st.sampled_from(
    ["..", ".", "", "~", "a", "link", "inner", "x.pth", "\x00", "..\\..", "C:", "é", "\u202e", "/", "\\"]
)
TEXT = st.text() | st.text(alphabet=st.sampled_from("abc:/.@\\\x00~-_"), max_size=30)


def _joined(kind: str, value: str) -> str:
    return f"{kind}:{value}"


DATASET_REFS = TEXT | st.builds(
    _joined,
    st.sampled_from(["builtin", "folder", "npz", "upload", "http", "", "BUILTIN"]),
    TEXT | st.lists(SEGMENTS, max_size=5).map("/".join),
)


@settings(max_examples=300, deadline=None)
@given(DATASET_REFS)
@example("upload:" + "a" * 64)
@example("folder:\x00")
def test_a_dataset_reference_round_trips_or_is_refused_naming_the_field(ref):
    try:
        parsed = parse_dataset_ref(ref)
    except InvalidInputError as error:
        assert error.field == "dataset" and str(error)
        return
    assert str(parsed) == ref
    assert parse_dataset_ref(str(parsed)) == parsed
    assert "\x00" not in parsed.value


@given(st.none() | st.integers() | st.binary() | st.lists(st.text(), max_size=2))
def test_a_dataset_reference_that_is_not_a_string_is_refused(value):
    with pytest.raises(InvalidInputError):
        parse_dataset_ref(value)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two data roots; one holds a symlink out of both, one a symlink into the other."""
    base = tmp_path_factory.mktemp("roots")
    first, second, outside = base / "first", base / "second", base / "outside"
    for folder in (first / "inner", second, outside):
        folder.mkdir(parents=True)
    (first / "link").symlink_to(outside)
    (second / "link").symlink_to(first / "inner")
    return [first, second]


@settings(max_examples=300, deadline=None)
@given(
    start=st.sampled_from(["root", "absolute", "relative", "home"]),
    parts=st.lists(SEGMENTS | st.text(max_size=8), max_size=6),
)
@example(start="root", parts=["link", "..", "..", "outside"])
@example(start="root", parts=["inner\x00"])
def test_a_path_never_resolves_outside_the_data_roots(roots, start, parts):
    allowed = roots
    prefix = {"root": f"{allowed[0]}/", "absolute": "/", "relative": "", "home": "~/"}[start]
    path = prefix + "/".join(parts)
    try:
        resolved = resolve_under_roots(path, allowed, field="models", what="weight file")
    except InvalidInputError as error:
        assert error.field == "models"
        return
    real = Path(os.path.realpath(resolved))
    assert any(real == root or root in real.parents for root in allowed), (path, real)


ARCHITECTURES = st.sampled_from(
    ["resnet18", "mobilenetv2_100", "test_resnet", "resnet18.a1_in1k", "Resnet18"]
)
SOURCES = st.sampled_from(
    [
        "random",
        "offline",
        "timm",
        "timm:",
        "timm:timm/resnet18.a1_in1k",
        "file:w.pth",
        "file:",
        "file:/a/\x00.pth",
    ]
)
MODEL_REFS = TEXT | st.builds(lambda a, s: f"{a}@{s}", ARCHITECTURES | TEXT, SOURCES | TEXT)


@settings(max_examples=300, deadline=None)
@given(MODEL_REFS)
@example("resnet18@file:/w/\x00.pth")
@example("resnet18@timm:")
def test_a_model_reference_round_trips_or_is_refused_naming_the_field(ref):
    try:
        spec = parse_model_ref(ref)
    except InvalidInputError as error:  # UnknownNameError too: an architecture timm lacks
        assert error.field == "models" and str(error)
        return
    assert spec.name == ref == f"{spec.architecture}@{spec.weights}"
    assert parse_model_ref(spec.name) == spec
    assert "\x00" not in ref and spec.weights not in ("timm:", "file:")


@settings(max_examples=200, deadline=None)
@given(MODEL_REFS)
@example("mobilenetv2_100")
def test_any_model_name_is_a_spec_or_a_refusal(name):
    try:
        spec = get_model_spec(name)
    except InvalidInputError as error:
        assert error.field == "models"
        return
    assert spec.name == name
