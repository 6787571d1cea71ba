"""Safe extraction of uploaded dataset archives (zip or tar of CLASS/IMAGE files).

Refuses: absolute paths, ``..`` components, names that are not UTF-8 or hold a NUL or a
component longer than the file system allows, links and devices, more than ``max_files``
images (and more than twice that many members in all, counted before the member list is
built: a zip's central directory is walked first, a tar is read lazily), an archive that
unpacks to more than ``max_bytes`` or to more than :data:`MAX_EXPANSION` times its own size
(decompression bombs: refused from the declared sizes, before anything is written, and each
member's copy stops as soon as it passes its declared size), and anything not laid out as
CLASS/IMAGE. Nothing is written outside ``target``.
"""

from __future__ import annotations

import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from zoorank.data.datasets import IMAGE_SUFFIXES
from zoorank.errors import InvalidInputError

# Images (PNG, JPEG) do not compress further, so a dataset's archive unpacks to about its own
# size; uncompressed BMP or TIFF may reach tens of times. Beyond this ratio (or the floor below,
# for small archives) it is a decompression bomb.
MAX_EXPANSION = 100
MIN_ALLOWANCE = 64 * 2**20
MEMBERS_PER_FILE = 2  # members in all (folders, other files) per allowed image
NAME_MAX = 255  # bytes in one path component (Linux)
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _safe_member(name: str) -> PurePosixPath | None:
    """The member's relative path, ``None`` for entries to skip (folders, hidden files)."""
    if "\x00" in name:
        raise InvalidInputError(f"archive member {name!r} has a NUL character in its name", field="file")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"archive member {name!r} has a name that is not UTF-8", field="file"
        ) from None
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InvalidInputError(f"archive member {name!r} escapes the archive (path traversal)", field="file")
    parts = _parts(name)
    if any(len(p.encode("utf-8")) > NAME_MAX for p in parts):
        raise InvalidInputError(
            f"archive member {name!r} has a folder or file name longer than {NAME_MAX} bytes", field="file"
        )
    return None if _skipped(parts) else PurePosixPath(*parts)


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _skipped(parts: list[str]) -> bool:
    """Entries that are not the dataset's: none left, hidden files, macOS resource forks."""
    return not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _counts_as_image(name: str) -> bool:
    """What :func:`_write` will count as an image, from the name alone (cheap: for counting
    members before they are read; unsafe names are refused when they are)."""
    parts = _parts(name)
    return (
        not name.endswith("/")
        and not _skipped(parts)
        and os.path.splitext(parts[-1])[1].lower() in IMAGE_SUFFIXES
    )


def _strip_common_root(paths: list[PurePosixPath]) -> int:
    """1 when every member sits under one top folder that itself holds class folders."""
    tops = {p.parts[0] for p in paths}
    return 1 if len(tops) == 1 and all(len(p.parts) == 3 for p in paths) else 0


def extract_class_folders(archive: Path, target: Path, *, max_files: int, max_bytes: int) -> None:
    """Extract image members to ``target/CLASS/NAME``; raises :class:`InvalidInputError`, also
    for a corrupt archive (bad CRC, truncated stream)."""
    try:
        _extract(archive, target, max_files=max_files, max_bytes=max_bytes)
    except (zipfile.BadZipFile, zlib.error, tarfile.TarError, EOFError) as exc:
        raise InvalidInputError(
            f"the archive is corrupt ({type(exc).__name__}: {exc}); upload it again", field="file"
        ) from None


def _zip_directory(archive: Path) -> Iterator[tuple[str, int]]:
    """``(name, declared size)`` of the members in a zip's central directory, read header by
    header: zipfile builds an object per entry before anything can be counted (a 100 MB zip of a
    million empty entries takes half a gigabyte and minutes to open). Stops where the directory
    cannot be read: zipfile then says what is wrong."""
    with archive.open("rb") as handle:
        size = handle.seek(0, 2)
        tail_start = max(0, size - 22 - 65535)
        handle.seek(tail_start)
        tail = handle.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) < end + 22:
            return
        directory_size = struct.unpack("<4s4H2LH", tail[end : end + 22])[5]
        start = tail_start + end - directory_size
        locator = tail[end - 20 : end] if end >= 20 else b""
        if locator[:4] == b"PK\x06\x07":  # zip64: its own end record sits before the locator
            handle.seek(struct.unpack("<4sLQL", locator)[2])
            record = handle.read(56)
            if record[:4] != b"PK\x06\x06" or len(record) < 56:
                return
            directory_size = struct.unpack("<4sQ2H2L4Q", record)[8]
            start = tail_start + end - 20 - 56 - directory_size
        handle.seek(max(0, start))
        while (header := handle.read(46))[:4] == b"PK\x01\x02" and len(header) == 46:
            flags = struct.unpack("<H", header[8:10])[0]
            size = struct.unpack("<L", header[24:28])[0]  # 0xFFFFFFFF for zip64: zipfile reads it
            name_length, extra, comment = struct.unpack("<3H", header[28:34])
            raw = handle.read(name_length)
            handle.seek(extra + comment, 1)
            name = raw.decode("utf-8" if flags & 0x800 else "cp437", errors="surrogateescape")
            yield name, 0 if size == 0xFFFFFFFF else size


def _count_members(members: Iterable[tuple[str, int]], max_files: int, max_bytes: int) -> None:
    """Refuse, from ``(name, declared size)`` pairs and stopping at the first member over a
    limit: more than ``max_files`` images, more than :data:`MEMBERS_PER_FILE` times that many
    members in all, images that declare more than ``max_bytes`` together."""
    images, declared = 0, 0
    for count, (name, size) in enumerate(members, start=1):
        if count > MEMBERS_PER_FILE * max_files:
            raise InvalidInputError(
                f"the archive holds more than {MEMBERS_PER_FILE * max_files} files and folders "
                f"(at most {max_files} images)",
                field="file",
            )
        if _counts_as_image(name):
            images, declared = images + 1, declared + size
        if images > max_files:
            raise InvalidInputError(f"the archive holds more than {max_files} images", field="file")
        if declared > max_bytes:
            raise _bomb(max_bytes)


def _bomb(max_bytes: int) -> InvalidInputError:
    return InvalidInputError(
        f"the archive unpacks to more than {max_bytes / 2**20:.0f} MB, the most allowed for an archive "
        f"of its size (the larger of {MAX_EXPANSION} times its size and {MIN_ALLOWANCE // 2**20} MB, "
        "within the upload limit): refused as a decompression bomb",
        field="file",
    )


def _extract(archive: Path, target: Path, *, max_files: int, max_bytes: int) -> None:
    members: list[tuple[PurePosixPath, Any, int]] = []
    max_bytes = min(max_bytes, max(MIN_ALLOWANCE, MAX_EXPANSION * archive.stat().st_size))
    if zipfile.is_zipfile(archive):
        _count_members(_zip_directory(archive), max_files, max_bytes)
        with zipfile.ZipFile(archive) as zf:
            members_read = ((z.filename, z.file_size) for z in zf.infolist())
            _count_members(members_read, max_files, max_bytes)  # what zipfile read
            for zinfo in zf.infolist():
                if zinfo.is_dir():
                    continue
                if (zinfo.external_attr >> 16) & 0o170000 == 0o120000:
                    raise InvalidInputError(f"archive member {zinfo.filename!r} is a symlink", field="file")
                if zinfo.flag_bits & 0x1:
                    raise InvalidInputError(f"archive member {zinfo.filename!r} is encrypted", field="file")
                if zinfo.compress_type not in ZIP_METHODS:
                    raise InvalidInputError(
                        f"archive member {zinfo.filename!r} uses compression method {zinfo.compress_type}; "
                        "use deflate (any zip tool's default)",
                        field="file",
                    )
                path = _safe_member(zinfo.filename)
                if path is not None:
                    members.append((path, zinfo, zinfo.file_size))
            _write(members, target, max_files, max_bytes, lambda member: zf.open(member))
        return
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError:
        raise InvalidInputError(
            "upload must be a zip or tar archive of CLASS/IMAGE files", field="file"
        ) from None
    with tf:
        # read lazily: a bomb is refused at the first header past the limit, not after 1 GB
        _count_members(((t.name + "/" * t.isdir(), t.size) for t in tf), max_files, max_bytes)
        for tinfo in tf.getmembers():
            if tinfo.isdir():
                continue
            if not tinfo.isfile():
                raise InvalidInputError(f"archive member {tinfo.name!r} is a link or device", field="file")
            path = _safe_member(tinfo.name)
            if path is not None:
                members.append((path, tinfo, tinfo.size))
        _write(members, target, max_files, max_bytes, lambda member: tf.extractfile(member))


def _write(
    members: list[tuple[PurePosixPath, Any, int]],
    target: Path,
    max_files: int,
    max_bytes: int,
    open_member: Callable[[Any], Any],
) -> None:
    images = [(p, info, size) for p, info, size in members if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise InvalidInputError("the archive holds no images (expected CLASS/IMAGE.png ...)", field="file")
    if len(images) > max_files:
        raise InvalidInputError(f"the archive holds more than {max_files} images", field="file")
    if sum(size for _, _, size in images) > max_bytes:
        raise _bomb(max_bytes)
    strip = _strip_common_root([p for p, _, _ in images])
    budget = max_bytes
    for path, info, declared in images:
        parts = path.parts[strip:]
        if len(parts) != 2:
            raise InvalidInputError(
                f"archive member {str(path)!r} is not CLASS/IMAGE; put each class in its own folder",
                field="file",
            )
        out = target / parts[0] / parts[1]
        out.parent.mkdir(parents=True, exist_ok=True)
        with open_member(info) as source, out.open("wb") as sink:
            budget -= _bounded_copy(source, sink, min(declared, budget), str(path))


def _bounded_copy(source: Any, sink: Any, limit: int, name: str) -> int:
    """Copy at most ``limit`` bytes; a member that holds more than that (more than it declared,
    or than the upload's remaining allowance) is refused as soon as it passes the limit."""
    written = 0
    while chunk := source.read(1 << 20):
        written += len(chunk)
        if written > limit:
            raise InvalidInputError(
                f"archive member {name!r} unpacks to more than it declares or the upload allows",
                field="file",
            )
        sink.write(chunk)
    return written
