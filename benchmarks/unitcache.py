"""A benchmark's per-unit cache: one gzipped JSON Lines file per benchmark and kind of unit.

Every benchmark that caches units of work (a score, a fine-tuning run) reads and writes them
here, never as files of their own. A file holds one line per unit, ``{"id": ..., "unit": ...}``,
sorted by id; each line is its own gzip member with a zero mtime, so the file's bytes depend only
on the units, and a changed unit changes only its own member: git stores the rest as it was
(a rerun that changes a few units adds a few kilobytes to a packed repository).

Only what the reports read is kept in the file (it is committed, so that the cache survives a
new machine). Bulk fields (``bulk``: key paths into a unit, ``"*"`` matching any key, e.g. the
saliency arrays of layer-tree units) are moved on writing to one JSON file per unit under a
gitignored folder, read back with :meth:`UnitCache.bulk`; a benchmark rebuilds them on demand
by redoing the unit.

Several processes may write one file: a write holds an exclusive lock (``fcntl``) on a lock file
in the bulk folder while it reads, updates and atomically replaces the file.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BulkPath = tuple[str, ...]
# path -> (file identity, units): a worker checks many units against one unchanged file. Writes
# never use it (a rewrite within the clock's granularity could look unchanged).
_READ_CACHE: dict[Path, tuple[tuple[int, int, int], dict[str, dict[str, Any]]]] = {}


def encode(units: dict[str, dict[str, Any]]) -> bytes:
    """The file's bytes: per unit, sorted by id, one gzip member holding its JSON line."""
    return b"".join(
        gzip.compress(_line(uid, units[uid]).encode(), compresslevel=9, mtime=0) for uid in sorted(units)
    )


def decode(data: bytes) -> dict[str, dict[str, Any]]:
    """id -> unit, from :func:`encode`'s bytes (gzip reads every member)."""
    out: dict[str, dict[str, Any]] = {}
    for line in gzip.decompress(data).decode().splitlines():
        row = json.loads(line)
        out[row["id"]] = row["unit"]
    return out


def _line(uid: str, unit: dict[str, Any]) -> str:
    # The unit's own key order is kept (reports iterate over it); NaN stays as the runs wrote it.
    return json.dumps({"id": uid, "unit": unit}, separators=(",", ":"), default=float) + "\n"


def split_bulk(unit: dict[str, Any], paths: tuple[BulkPath, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``unit`` without the fields at ``paths``, and those fields as a nested dict of the same
    shape (empty when the unit has none)."""
    compact = json.loads(json.dumps(unit, default=float))  # a deep copy, as the file will hold it
    bulk: dict[str, Any] = {}
    for path in paths:
        _move(compact, bulk, path)
    return compact, bulk


def _move(source: Any, target: dict[str, Any], path: BulkPath) -> None:
    if not isinstance(source, dict) or not path:
        return
    head, rest = path[0], path[1:]
    for key in list(source) if head == "*" else [head]:
        if key not in source:
            continue
        if rest:
            inner: dict[str, Any] = {}
            _move(source[key], inner, rest)
            if inner:
                target.setdefault(key, {})
                _merge(target[key], inner)
        else:
            target[key] = source.pop(key)


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class UnitCache:
    """The units of one benchmark and kind, in ``path`` (``*.jsonl.gz``); their bulk fields
    (``bulk``) under the gitignored folder ``bulk_dir``."""

    def __init__(self, path: Path, bulk_dir: Path, bulk: tuple[BulkPath, ...] = ()) -> None:
        self.path = path
        self.bulk_dir = bulk_dir
        self.bulk_paths = bulk

    def units(self) -> dict[str, dict[str, Any]]:
        """id -> unit, every unit in the file (empty when there is no file yet)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = _READ_CACHE.get(self.path)
        if cached is not None and cached[0] == identity:
            return cached[1]
        units = decode(self.path.read_bytes())
        _READ_CACHE[self.path] = (identity, units)
        return units

    def get(self, uid: str) -> dict[str, Any] | None:
        return self.units().get(uid)

    def under(self, prefix: str) -> list[dict[str, Any]]:
        """The units whose id starts with ``prefix/``, sorted by id (e.g. every unit of a target)."""
        return [unit for uid, unit in sorted(self.units().items()) if uid.startswith(f"{prefix}/")]

    def put(self, uid: str, unit: dict[str, Any]) -> None:
        """Store ``unit`` under ``uid`` (replacing any earlier one); its bulk fields go to the bulk
        folder (an earlier unit's bulk is removed when the new one has none)."""
        compact, bulk = split_bulk(unit, self.bulk_paths)
        self.put_many({uid: compact}, {uid: bulk})

    def put_many(
        self, units: dict[str, dict[str, Any]], bulk: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """Store already-compact ``units`` and, per id, their bulk fields, in one rewrite."""
        units = {uid: json.loads(json.dumps(unit, default=float)) for uid, unit in units.items()}
        with self._locked():
            every = (decode(self.path.read_bytes()) if self.path.exists() else {}) | units
            for uid, fields in (bulk or {}).items():
                self.put_bulk(uid, fields)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(encode(every))
            tmp.replace(self.path)

    def bulk(self, uid: str) -> dict[str, Any] | None:
        """The bulk fields of unit ``uid``, or None when this machine has not (re)computed them."""
        path = self._bulk_path(uid)
        return json.loads(path.read_text()) if path.exists() else None

    def _bulk_path(self, uid: str) -> Path:
        return self.bulk_dir / f"{uid}.json"

    def put_bulk(self, uid: str, fields: dict[str, Any]) -> None:
        """Store (or, when empty, remove) the bulk fields of unit ``uid``."""
        path = self._bulk_path(uid)
        if not fields:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fields, separators=(",", ":"), default=float) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.bulk_dir.mkdir(parents=True, exist_ok=True)
        with open(self.bulk_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
