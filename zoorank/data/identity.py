"""A dataset's identity and index, computed once: what results and caches are keyed by.

* **fingerprint** -- sha256 over the sorted manifest (folder: ``CLASS/FILE`` and the sha256 of
  each file's bytes; in-memory sets: the image and label arrays). Results and the feature cache
  are keyed by it: by content, not by path.
* **version** -- what changes when the content may have: a folder's listing (``CLASS/FILE``,
  size and mtime of each file, read with ``os.scandir``, no file opened), an ``.npz`` file's size
  and mtime, an upload's id (written once by the service, named by the archive's hash). Cheap
  to recompute; equal versions stand for equal fingerprints, as a weight file's (path, size,
  mtime) stands for its hash (:func:`zoorank.zoo.load.weights_digest`).
* **index** -- labels per row and class names, what the checks before a job need.

Each file's digest is cached by (path, size, mtime_ns) and each index by (source, version), in
this process: a dataset's bytes are hashed once however many jobs and models use it. A worker
in another process is handed the identity stored with its job (``expect``): when the listing
it sees has the same version it takes the stored fingerprint without reading a byte; when not
(a changed dataset, or a copy whose mtimes differ) it hashes, and refuses data whose content
is no longer what the job was submitted with.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from zoorank.errors import InvalidInputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
FILE_DIGESTS_CACHED = 200_000  # ~40 MB of keys at most; an upload holds up to 100 000 files
INDEXES_CACHED = 32


@dataclass(frozen=True)
class DatasetIdentity:
    """What a job stores about its dataset: ``version`` (cheap to check) and ``fingerprint``."""

    version: str
    fingerprint: str


@dataclass(frozen=True)
class DatasetIndex:
    """A dataset without its images: identity, ``labels`` (n,) int64, class names, and for a
    folder the file of each row."""

    identity: DatasetIdentity
    labels: np.ndarray
    class_names: list[str]
    files: tuple[Path, ...] = ()

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint


@dataclass(frozen=True)
class FolderListing:
    """``ROOT/CLASS/IMAGE`` as found on disk: files, labels, classes and the listing's version."""

    files: tuple[Path, ...]
    names: tuple[str, ...]  # CLASS/FILE of each file, the manifest's names
    labels: np.ndarray
    class_names: list[str]
    stats: tuple[tuple[int, int], ...]  # (size, mtime_ns) per file
    version: str


def list_folder(root: Path) -> FolderListing:
    """The images of ``ROOT/CLASS/IMAGE`` in manifest order (classes, then files, by name;
    hidden class folders and symlinked files left out), from directory entries only."""
    if not root.is_dir():
        raise InvalidInputError(f"dataset folder {root} does not exist", field="dataset")
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    files: list[Path] = []
    names: list[str] = []
    labels: list[int] = []
    stats: list[tuple[int, int]] = []
    version = hashlib.sha256()
    for label, name in enumerate(classes):
        with os.scandir(root / name) as entries:
            images = sorted(
                (e for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES),
                key=lambda e: e.name,
            )
        for entry in images:
            if entry.is_symlink() or not entry.is_file():
                continue
            stat = entry.stat(follow_symlinks=False)
            files.append(Path(entry.path))
            names.append(f"{name}/{entry.name}")
            labels.append(label)
            stats.append((stat.st_size, stat.st_mtime_ns))
            version.update(f"{name}/{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    if not files:
        raise InvalidInputError(
            f"dataset folder {root} holds no images in class subfolders (expected ROOT/CLASS/IMAGE)",
            field="dataset",
        )
    return FolderListing(
        files=tuple(files),
        names=tuple(names),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=classes,
        stats=tuple(stats),
        version=version.hexdigest(),
    )


@lru_cache(maxsize=FILE_DIGESTS_CACHED)
def file_digest(path: str, size: int, mtime_ns: int) -> bytes:
    """sha256 of a file's bytes, cached by (path, size, mtime_ns): read once per process
    while the file is unchanged."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def folder_fingerprint(listing: FolderListing) -> str:
    """sha256 over ``CLASS/FILE\\0`` and the sha256 of the file, in manifest order."""
    digest = hashlib.sha256()
    for path, name, (size, mtime_ns) in zip(listing.files, listing.names, listing.stats, strict=True):
        digest.update(f"{name}\0".encode())
        digest.update(file_digest(str(path), size, mtime_ns))
    return digest.hexdigest()


def array_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over each array's shape, dtype and bytes (in-memory datasets)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode() + str(array.dtype).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def file_version(path: Path) -> str:
    """The version of a one-file dataset (``.npz``): its size and mtime."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InvalidInputError(f"{path.name} cannot be read: {exc.strerror}", field="dataset") from None
    return hashlib.sha256(f"{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()


_indexes: OrderedDict[tuple[str, str], DatasetIndex] = OrderedDict()
_lock = threading.Lock()


def cached_index(
    source: str,
    version: str,
    build: Callable[[str | None], DatasetIndex],
    expect: DatasetIdentity | None,
) -> DatasetIndex:
    """The index of ``source`` at ``version``: from this process's cache, else ``build(known)``
    with ``known`` the fingerprint stored with the job when ``expect`` has this version (then
    nothing is hashed), ``None`` otherwise (``build`` computes it). Checked against
    ``expect``."""
    key = (source, version)
    with _lock:
        index = _indexes.get(key)
        if index is not None:
            _indexes.move_to_end(key)
    if index is None:
        known = expect.fingerprint if expect is not None and expect.version == version else None
        index = build(known)
        with _lock:
            _indexes[key] = index
            while len(_indexes) > INDEXES_CACHED:
                _indexes.popitem(last=False)
    check_expected(index, expect)
    return index


def check_expected(index: DatasetIndex, expect: DatasetIdentity | None) -> None:
    """Refuse data whose content is not what the job was submitted with."""
    if expect is not None and index.fingerprint != expect.fingerprint:
        raise InvalidInputError(
            f"the dataset changed after the job was submitted (content fingerprint "
            f"{index.fingerprint[:12]}, submitted {expect.fingerprint[:12]}); submit a new job",
            field="dataset",
        )


def cache_clear() -> None:
    """Forget every cached index and file digest (tests; a process that wants to re-read)."""
    with _lock:
        _indexes.clear()
    file_digest.cache_clear()
