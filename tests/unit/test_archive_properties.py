"""Properties of upload archive handling (issue 13 §3): for random archives (member names with
``..``, absolute and drive paths, backslashes, unicode, NUL, overlong names; links, devices,
folders; random sizes and limits), extraction writes only regular image files at
``target/CLASS/FILE``, within the limits, and nothing outside ``target``; every refusal is the
project's :class:`InvalidInputError`. Through the API, every answer is a 201 or a 4xx
problem+json and nothing is written outside the upload folder."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st
from zoorank_app.archives import extract_class_folders
from zoorank_app.settings import Settings

from tests.unit.test_api import _queued
from zoorank.data.datasets import IMAGE_SUFFIXES, encode_png
from zoorank.errors import InvalidInputError

PNG = encode_png(np.full((4, 4, 3), 7, dtype=np.uint8))
SEGMENT = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "b",
        "set",
        ".hidden",
        "__MACOSX",
        "C:",
        "é",
        "😀",
        "\u202e",
        "x" * 256,
        "a\x00b",
        "\udcff",
    ]
) | st.text(max_size=6)
FILE = st.builds(
    lambda stem, suffix: stem + suffix, SEGMENT, st.sampled_from([".png", ".PNG", ".jpg", ".txt", ""])
)
PREFIX = st.sampled_from(
    ["", "/", "../", "../../", "C:\\", "\\\\server\\share\\", "./", "set/", "a\\..\\..\\"]
)
WEIRD_NAME = st.builds(
    lambda prefix, folders, file: prefix + "/".join([*folders, file]),
    PREFIX,
    st.lists(SEGMENT, max_size=3),
    FILE,
)
PLAIN_NAME = st.builds(
    lambda folder, i, suffix: f"{folder}/{i}{suffix}",
    st.sampled_from(["a", "b", "set/a", "set/b"]),
    st.integers(0, 3),
    st.sampled_from([".png", ".jpg"]),
)
NAME = PLAIN_NAME | WEIRD_NAME
DATA = st.sampled_from([PNG, b"", b"not an image"]) | st.integers(0, 4000).map(lambda n: b"0" * n)
ENTRY = st.tuples(st.sampled_from(["file"] * 6 + ["dir", "symlink", "hardlink", "device"]), NAME, DATA)
# Mostly plausible class folders, with at most a few members of any kind and name among them.
ENTRIES = st.builds(
    lambda plain, other, at: plain[:at] + other + plain[at:],
    st.lists(st.tuples(st.just("file"), PLAIN_NAME, DATA), min_size=1, max_size=8),
    st.lists(ENTRY, max_size=2),
    st.integers(0, 8),
)


def _build(kind: str, entries: list[tuple[str, str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            warnings.simplefilter("ignore", UserWarning)  # duplicate names are part of the test
            for what, name, data in entries:
                info = zipfile.ZipInfo(name + "/" if what == "dir" else name)
                if what in ("symlink", "hardlink"):
                    info.external_attr = 0o120777 << 16
                    data = b"../../etc/passwd"
                zf.writestr(info, b"" if what == "dir" else data)
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w:gz" if kind == "tar.gz" else "w") as tf:
        for what, name, data in entries:
            info = tarfile.TarInfo(name)
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "device": tarfile.CHRTYPE,
            }[what]
            info.linkname = "../../etc/passwd" if what in ("symlink", "hardlink") else ""
            info.size = len(data) if what == "file" else 0
            tf.addfile(info, io.BytesIO(data) if what == "file" else None)
    return buffer.getvalue()


def _files(root: Path, *, skip: Path | None = None) -> set[str]:
    found = set()
    for folder, dirs, files in os.walk(root):
        if skip is not None and Path(folder) == skip:
            dirs.clear()
            continue
        found.update(str(Path(folder) / name) for name in [*dirs, *files])
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["zip", "tar", "tar.gz"]),
    entries=ENTRIES,
    max_files=st.integers(1, 24),
    max_bytes=st.integers(0, 60_000),
)
@example(kind="zip", entries=[("file", "../../evil/x.png", PNG)], max_files=5, max_bytes=10_000)
@example(kind="tar", entries=[("file", "a/" + "x" * 300 + ".png", PNG)], max_files=5, max_bytes=10_000)
@example(kind="tar", entries=[("file", "a/\udcff.png", PNG)], max_files=5, max_bytes=10_000)
def test_extraction_writes_only_class_images_inside_the_target(kind, entries, max_files, max_bytes):
    try:
        archive_bytes = _build(kind, entries)
    except (ValueError, UnicodeError):
        reject()  # a name the archive format itself cannot hold
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / "upload" / "archive"
        archive.parent.mkdir()
        archive.write_bytes(archive_bytes)
        target = root / "upload" / "extract"
        before = _files(root)
        try:
            extract_class_folders(archive, target, max_files=max_files, max_bytes=max_bytes)
            event("extracted")
        except InvalidInputError as error:
            assert error.field == "file" and str(error)
            event(f"refused: {str(error).split(' ')[-1]}")
        outside = _files(root, skip=target) - before - {str(target)}
        assert not outside, outside  # nothing written outside the target
        written = [Path(p) for p in _files(target)] if target.exists() else []
        images = [p for p in written if p.is_file()]
        assert not any(p.is_symlink() for p in written)
        assert all(
            len(p.relative_to(target).parts) == 2 and p.suffix.lower() in IMAGE_SUFFIXES for p in images
        )
        assert all(p.is_dir() for p in written if p not in images)
        assert len(images) <= max_files and sum(p.stat().st_size for p in images) <= max_bytes


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return _queued(Settings(var_dir=root / "var", data_roots=[root / "data"], sweep_interval=0, rate_limit=0))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(kind=st.sampled_from(["zip", "tar"]), entries=ENTRIES)
@example(kind="zip", entries=[("file", f"{c}/{i}.png", PNG) for c in "ab" for i in range(2)])
@example(kind="tar", entries=[("file", f"{c}/{i}.png", b"x") for c in ["a", "\udcff"] for i in range(2)])
@example(kind="zip", entries=[("file", f"{c}/{i}.png", PNG) for c in ["a", "b" * 256] for i in range(2)])
def test_every_upload_answer_is_a_dataset_or_a_4xx_problem(client, kind, entries):
    try:
        archive = _build(kind, entries)
    except (ValueError, UnicodeError):
        reject()
    settings_ = client.app.state.settings
    root = settings_.var_dir.parent
    before = _files(root, skip=settings_.upload_dir)
    response = client.post("/v1/datasets", files={"file": (f"x.{kind}", archive)})
    if response.status_code != 201:
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == response.status_code
        assert str(root) not in response.text  # no server paths
    new = {
        p
        for p in _files(root, skip=settings_.upload_dir) - before
        if not Path(p).name.startswith("zoorank.db")
    }
    assert not new, new
