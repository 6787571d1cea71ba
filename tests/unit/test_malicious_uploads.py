"""Malicious uploads and weight files (issue 13 §3), beside the cases in test_api: a ~1 GB
decompression bomb (honest or lying about its size, zip or tar.gz), 10^5 tiny files, non-image
files, truncated images, links and devices, absolute paths, zip slip, an image over 50 Mpx, a
weight file carrying a pickle. Each is refused with a clear 4xx naming the problem, nothing is
written outside the upload folder, and the API's memory and the bytes it writes stay bounded
while it checks them."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import struct
import tarfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from zoorank_app.settings import Settings

from tests.service_harness import zip_archive as _zip
from tests.unit.test_api import _queued, assert_problem
from zoorank.data import load_dataset
from zoorank.data.datasets import encode_png
from zoorank.errors import InvalidInputError
from zoorank.zoo import create_model, parse_model_ref

MB = 2**20
PNG = [encode_png(np.full((8, 8, 3), v, dtype=np.uint8)) for v in (20, 90, 160, 230)]


@pytest.fixture
def settings(tmp_path):
    return Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0, rate_limit=0)


def _upload(client, data: bytes, name: str = "x.zip"):
    return client.post("/v1/datasets", files={"file": (name, data)})


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


def _link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _four_images(**extra: bytes) -> dict[str, bytes]:
    return {"a/1.png": PNG[0], "a/2.png": PNG[1], "b/1.png": PNG[2], "b/2.png": PNG[3], **extra}


# -- writing archives by hand: bombs cost ~1 MB and milliseconds, not 1 GB ----------------------

# One MiB of zeros deflated after a full flush: the same bytes every time (the compressor's state
# is reset), so n MiB of zeros is this block n times. CRC of n MiB of zeros: folded per MiB.
_COMPRESSOR = zlib.compressobj(9, zlib.DEFLATED, -15)
ZEROS_BLOCK = _COMPRESSOR.compress(bytes(MB)) + _COMPRESSOR.flush(zlib.Z_FULL_FLUSH)
FINAL_BLOCK = zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def _zeros_crc(mib: int) -> int:
    crc, chunk = 0, bytes(MB)
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return crc


def _raw_zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of already deflated members ``(name, deflated, crc, declared size)``."""
    out, directory = bytearray(), bytearray()
    for name, deflated, crc, size in members:
        encoded = name.encode()
        header = struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), size, len(encoded), 0
        )
        directory += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0,
            crc,
            len(deflated),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            len(out),
        )
        directory += encoded
        out += header + encoded + deflated
    count = min(len(members), 0xFFFF)
    return bytes(
        out
        + directory
        + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(out), 0)
    )


def _zip_bomb(*, lying: bool) -> bytes:
    """Four members of 256 MiB of zeros each (1 GiB), about 1 MB zipped; ``lying``: each
    declares 1 KiB (and the CRC of 1 KiB of zeros)."""
    deflated = ZEROS_BLOCK * 256 + FINAL_BLOCK
    size, crc = (1024, zlib.crc32(bytes(1024))) if lying else (256 * MB, _zeros_crc(256))
    return _raw_zip([(name, deflated, crc, size) for name in _four_images()])


def _tar_gz_bomb(mib: int = 256) -> bytes:
    """A tar.gz of four members of ``mib`` MiB of zeros each (1 GiB), about 1 MB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body, crc, length = bytearray(), 0, 0

    def add(data: bytes) -> None:
        nonlocal crc, length
        body.extend(compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH))
        crc, length = zlib.crc32(data, crc), length + len(data)

    zeros_crc = _zeros_crc(mib)
    for name in _four_images():
        info = tarfile.TarInfo(name)
        info.size = mib * MB
        add(info.tobuf(format=tarfile.USTAR_FORMAT))
        body.extend(ZEROS_BLOCK * mib)  # the member's data (a multiple of 512: no padding)
        crc = _crc32_combine(crc, zeros_crc, mib * MB)
        length += mib * MB
    add(bytes(1024))  # end of archive
    body.extend(compressor.flush())
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + bytes(body) + struct.pack("<2L", crc, length & 0xFFFFFFFF)


def _crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """zlib's crc32_combine (the CRC of A+B from those of A and B), which Python does not expose."""

    def times(matrix: list[int], vector: int) -> int:
        total, row = 0, 0
        while vector:
            if vector & 1:
                total ^= matrix[row]
            vector, row = vector >> 1, row + 1
        return total

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, matrix[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = square(odd)
    odd = square(even)
    while True:
        even = square(odd)
        if length2 & 1:
            crc1 = times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = square(even)
        if length2 & 1:
            crc1 = times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def test_the_hand_made_bombs_are_valid_archives_of_zeros():
    """What the bombs are made of, at 1 MiB a member: every member reads back as zeros with its
    CRC checked (zipfile and gzip check it), so only their size differs at 256 MiB."""
    deflated = ZEROS_BLOCK + FINAL_BLOCK
    with zipfile.ZipFile(io.BytesIO(_raw_zip([("a/1.png", deflated, _zeros_crc(1), MB)]))) as zf:
        assert zf.read("a/1.png") == bytes(MB)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_tar_gz_bomb(mib=1)))) as tf:
        assert [tf.extractfile(m).read() == bytes(MB) for m in tf.getmembers()] == [True] * 4
    with zipfile.ZipFile(io.BytesIO(_zip_bomb(lying=False))) as zf:
        assert sum(i.file_size for i in zf.infolist()) == 1024 * MB
    assert len(_zip_bomb(lying=False)) < 2 * MB and len(_tar_gz_bomb()) < 2 * MB


# -- measuring the API while it checks -------------------------------------------------------


def _bytes_written() -> int:
    """Bytes this process has passed to write(2) so far (Linux /proc/self/io ``wchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


@contextlib.contextmanager
def _measured() -> Iterator[dict[str, float]]:
    """Peak Python memory (tracemalloc, every thread) and bytes written during the block."""
    figures: dict[str, float] = {}
    written, began = _bytes_written(), time.perf_counter()
    tracemalloc.start()
    try:
        yield figures
    finally:
        figures["peak_mb"] = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
        figures["written_mb"] = (_bytes_written() - written) / MB
        figures["seconds"] = time.perf_counter() - began


def _outside_uploads(settings: Settings) -> set[Path]:
    """Every file and folder under the test's folder but outside the upload folder, the
    database aside."""
    root = settings.var_dir.parent
    return {
        p
        for p in root.rglob("*")
        if settings.upload_dir not in (p, *p.parents) and not p.name.startswith("zoorank.db")
    }


@pytest.mark.parametrize(
    ("bomb", "name", "status", "contains"),
    [
        (lambda: _zip_bomb(lying=False), "bomb.zip", 422, "decompression bomb"),
        # declares 1 KiB a member: nothing past the declared size is read, so 4 KiB of zeros
        # are written and refused as images
        (lambda: _zip_bomb(lying=True), "liar.zip", 422, "image a/1.png is not a readable image"),
        (_tar_gz_bomb, "bomb.tar.gz", 422, "decompression bomb"),
    ],
)
def test_a_one_gigabyte_decompression_bomb_is_refused_with_bounded_memory_and_disk(
    settings, bomb, name, status, contains
):
    client = _queued(settings)
    archive = bomb()
    assert len(archive) < 2 * MB
    before = _outside_uploads(settings)
    with _measured() as figures:
        response = _upload(client, archive, name)
    assert_problem(response, status, None, contains)
    assert figures["peak_mb"] < 32, figures  # the archive is ~1 MB; it unpacks to 1 GiB
    assert figures["written_mb"] < 8, figures  # the upload spooled and copied, little more
    assert _outside_uploads(settings) == before
    assert not [p for p in settings.upload_dir.rglob("*") if p.is_file()]  # nothing kept


@pytest.mark.slow  # ~4 s on 2 cores: 10^5 entries made, sent and walked
def test_a_hundred_thousand_tiny_files_are_refused_before_they_are_listed(settings):
    client = _queued(settings)
    assert settings.max_archive_files == 100_000
    empty = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    archive = _raw_zip([(f"c{i % 2}/{i}.png", empty, 0, 0) for i in range(100_001)])
    with _measured() as figures:
        response = _upload(client, archive)
    assert_problem(response, 422, "file", "more than 100000 images")
    # zipfile alone would take ~50 MB (an object per entry) and seconds to list them
    assert figures["peak_mb"] < 40 and figures["written_mb"] < 32, figures
    assert figures["seconds"] < 20, figures
    assert not [p for p in settings.upload_dir.rglob("*") if p.is_file()]


def test_the_file_limit_holds_at_its_value(settings):
    client = _queued(Settings(**{**settings.model_dump(), "max_archive_files": 6}))
    six = {f"{c}/{i}.png": PNG[i % 4] for c in "ab" for i in range(3)}
    assert _upload(client, _zip(six)).status_code == 201
    assert_problem(_upload(client, _zip({**six, "b/3.png": PNG[0]})), 422, "file", "more than 6 images")
    folders = {f"{c}{i}/": b"" for c in "xyz" for i in range(3)}  # 6 images, 9 folders: 15 > 2 x 6
    assert_problem(_upload(client, _zip({**six, **folders})), 422, "file", "more than 12 files and folders")


def test_non_image_files_are_never_written(settings):
    client = _queued(settings)
    only_text = _zip({"a/readme.txt": b"hello", "b/run.sh": b"#!/bin/sh\nrm -rf /\n"})
    assert_problem(_upload(client, only_text), 422, "file", "holds no images")
    mixed = _zip(
        _four_images(**{"a/run.sh": b"#!/bin/sh", "a/.hidden.png": PNG[0], "__MACOSX/a/._1.png": b"\x00\x05"})
    )
    response = _upload(client, mixed)
    assert response.status_code == 201, response.text
    folder = settings.upload_dir / response.json()["ref"].split(":")[1]
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "a/1.png",
        "a/2.png",
        "b/1.png",
        "b/2.png",
    ]


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_a_truncated_image_is_refused_by_its_class_and_file_name(settings, kind):
    client = _queued(settings)
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format=kind)
    whole = buffer.getvalue()
    response = _upload(client, _zip(_four_images(**{"b/2.png": whole[: len(whole) // 2]})))
    assert_problem(response, 422, "dataset", "image b/2.png is not a readable image")
    assert str(settings.var_dir) not in response.text and "/tmp" not in response.text


def _zip_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in _four_images().items():
            zf.writestr(name, data)
        link = zipfile.ZipInfo("a/3.png")
        link.external_attr = 0o120777 << 16  # a symlink, its target as content
        zf.writestr(link, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "contains"),
    [
        (_zip_symlink, "is a symlink"),
        (lambda: _tar([_link("a/3.png", tarfile.SYMTYPE, "../../../etc/passwd")]), "is a link or device"),
        (lambda: _tar([_link("a/3.png", tarfile.CHRTYPE, "")]), "is a link or device"),
        (lambda: _tar([_link("a/3.png", tarfile.FIFOTYPE, "")]), "is a link or device"),
        (lambda: _tar([("/etc/cron.d/x.png", PNG[0])]), "path traversal"),
        (lambda: _tar([("../../x.png", PNG[0])]), "path traversal"),
        (lambda: _tar([("a/../../../x.png", PNG[0])]), "path traversal"),
        (lambda: _zip(_four_images(**{"..\\..\\x.png": PNG[0]})), "path traversal"),
        (lambda: _zip(_four_images(**{"C:\\Windows\\x.png": PNG[0]})), "path traversal"),
        (lambda: _zip(_four_images(**{"\\\\server\\share\\x.png": PNG[0]})), "path traversal"),
        (lambda: _tar([("a/\u00e9\x00.png", PNG[0])]), "NUL character"),  # a pax name keeps its NUL
        (lambda: _tar([("a/" + "x" * 300 + ".png", PNG[0])]), "longer than 255 bytes"),
    ],
)
def test_links_devices_absolute_paths_and_zip_slip_are_refused(settings, tmp_path, archive, contains):
    client = _queued(settings)
    before = _outside_uploads(settings)
    assert_problem(_upload(client, archive()), 422, "file", contains)
    assert _outside_uploads(settings) == before
    assert not (tmp_path.parent / "x.png").exists() and not list(tmp_path.rglob("x.png"))
    assert not [p for p in settings.upload_dir.rglob("*") if p.is_file()]


def _png_header_only(width: int, height: int) -> bytes:
    """A valid black-and-white PNG of ``width`` x ``height`` (1 bit a pixel, all zeros): 60 Mpx
    in about 8 kB, made without ever holding the image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))

    row = 1 + (width + 7) // 8  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(bytes(row * 1024)) for _ in range(height // 1024))
    data += compressor.compress(bytes(row * (height % 1024))) + compressor.flush()
    ihdr = struct.pack(">2L5B", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_an_image_over_50_megapixels_is_refused_in_uploads_and_folders(settings):
    big = _png_header_only(7746, 7746)  # 60,000,516 pixels: PIL alone only warns below 100 Mpx
    assert len(big) < 20_000
    client = _queued(settings)
    with _measured() as figures:
        response = _upload(client, _zip(_four_images(**{"a/2.png": big})))
    assert_problem(
        response, 422, "dataset", "image a/2.png is 7746x7746, more than the limit of 50 megapixels"
    )
    assert figures["peak_mb"] < 32, figures  # refused from the header, never decoded
    folder = settings.data_roots[0] / "set"
    for name, data in _four_images(**{"b/1.png": big}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    dataset = load_dataset(f"folder:{folder}", data_roots=settings.data_roots)
    with pytest.raises(
        InvalidInputError, match=r"image b/1\.png is 7746x7746, more than the limit of 50 megapixels"
    ):
        dataset.read(np.arange(len(dataset)))


class _Payload:
    """Unpickling this would run a shell command: it must never be unpickled."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/zoorank-pwned",))


@pytest.mark.parametrize(
    ("make", "contains"),
    [
        (
            lambda p: torch.save({"state_dict": {"w": torch.ones(1)}, "run": _Payload()}, p),
            "carries pickled objects other than tensors (posix.system)",
        ),
        (lambda p: p.write_bytes(b"not a weight file"), "is not a readable weight file"),
        (lambda p: p.write_bytes(b""), "is not a readable weight file"),
        (lambda p: torch.save({"w": 3}, p), "does not hold a state dict"),
    ],
)
def test_a_weight_file_carrying_a_pickle_or_junk_is_a_422_problem(settings, make, contains):
    client = _queued(settings)
    settings.data_roots[0].mkdir(parents=True, exist_ok=True)
    path = settings.data_roots[0] / "weights.pth"
    make(path)
    body = {"name": "mine", "architecture": "test_resnet", "weights": f"file:{path}"}
    assert_problem(client.post("/v1/models", json=body), 422, "models", f"weights.pth {contains}")
    assert not Path("/tmp/zoorank-pwned").exists()
    # named in a job (test_resnet@file:PATH), the worker loads it: the model fails with the reason
    with pytest.raises(InvalidInputError, match=re.escape(f"weights.pth {contains}")):
        create_model(parse_model_ref(f"test_resnet@file:{path}"))
