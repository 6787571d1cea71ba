"""Safe extraction of uploaded dataset archives (zip or tar of CLASS/IMAGE files).

Refuses: absolute paths, ``..`` components, links and devices, more than ``max_files``
members, more than ``max_bytes`` uncompressed, and anything not laid out as CLASS/IMAGE.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from zoorank.data.datasets import IMAGE_SUFFIXES
from zoorank.errors import InvalidInputError


def _safe_member(name: str) -> PurePosixPath | None:
    """The member's relative path, ``None`` for entries to skip (folders, hidden files)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InvalidInputError(f"archive member {name!r} escapes the archive (path traversal)", field="file")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return PurePosixPath(*parts)


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


def _extract(archive: Path, target: Path, *, max_files: int, max_bytes: int) -> None:
    members: list[tuple[PurePosixPath, Any, int]] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for zinfo in zf.infolist():
                if zinfo.is_dir():
                    continue
                if (zinfo.external_attr >> 16) & 0o170000 == 0o120000:
                    raise InvalidInputError(f"archive member {zinfo.filename!r} is a symlink", field="file")
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
        raise InvalidInputError(f"the archive unpacks to more than {max_bytes // 2**20} MB", field="file")
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
