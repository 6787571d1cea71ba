"""On-disk feature cache keyed by content, so a new score never re-runs a model; bounded in size,
least-recently-used entries evicted first.

Key: sha256 of (entry format, model architecture, weights digest, preprocessing, dataset
fingerprint, sample ids, tap rows). Entries are ``<root>/<key[:2]>/<key>.npz`` files written
atomically (temp file + rename), so two workers racing on the same key both end with a complete
file. Their arrays are stored losslessly as deflated byte planes (:mod:`zoorank.features.packing`);
:data:`CACHE_FORMAT` is in the key and in the entry, so an entry of another format is never read.

Bound (``ZOORANK_CACHE_MAX_MB``, :meth:`FeatureCache.from_settings`): an entry's last use is its
file's mtime, set by the cache itself when it writes the entry and when it reads it (atime is
not kept by ``noatime``/``relatime`` mounts). After each write, the entries used least recently
are deleted until the folder holds at most ``max_bytes``. No lock and no index: several
processes, on several hosts sharing the folder, may read, write and evict at once —

* a reader that has opened an entry reads it to the end even if it is deleted meanwhile (POSIX
  keeps an unlinked file's data while it is open); a reader that finds it gone, or damaged (a
  network file system's stale handle), gets ``None`` and the caller recomputes;
* two evictors may choose the same entry: a file already gone is skipped, and each stops once its
  own listing, less what it or the other deleted, fits the bound;
* an entry larger than the whole bound (its arrays uncompressed, or its file) is not written (it
  would evict everything else and be the first evicted after): the running job keeps it in
  memory, a later job recomputes it;
* the bound holds once writes settle; while a write is under way the folder may exceed it by that
  one entry (its temp file). Temp files left by a killed writer are deleted after an hour;
* a write that fails (a full disk) is logged and skipped: the job goes on with its features.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from zoorank.features.packing import EntryReader, write_entry

if TYPE_CHECKING:  # extract imports torch: `zoorank cache stats` does without
    from zoorank.features.extract import FeatureSet

CACHE_FORMAT = 2  # 2: byte-plane layout (zoorank.features.packing)
MB = 2**20
# A temp file this old is a killed writer's (writing the largest entry seen, 357 MB, takes seconds).
STALE_TEMP_SECONDS = 3600.0
ENTRY_NAME = re.compile(r"^[0-9a-f]{64}\.npz$")
TEMP_SUFFIX = ".npz.tmp"

log = logging.getLogger(__name__)


class CacheSettings(Protocol):
    """What :meth:`FeatureCache.from_settings` reads (``zoorank.settings.CoreSettings``)."""

    cache_dir: Path
    cache_max_mb: int


def feature_key(
    *,
    architecture: str,
    weights_digest: str,
    preprocessing: dict[str, object],
    dataset_fingerprint: str,
    sample_ids: np.ndarray,
    tap_rows: np.ndarray,
) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "architecture": architecture,
        "weights": weights_digest,
        "preprocessing": preprocessing,
        "dataset": dataset_fingerprint,
        "samples": hashlib.sha256(np.asarray(sample_ids, dtype=np.int64).tobytes()).hexdigest(),
        "tap_rows": hashlib.sha256(np.asarray(tap_rows, dtype=np.int64).tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    size: int
    last_used: float  # seconds since the epoch (the file's mtime)


@dataclass
class PruneReport:
    """What one eviction or prune deleted and what it left."""

    removed_entries: int = 0
    freed_bytes: int = 0
    removed_temp_files: int = 0
    remaining_entries: int = 0
    remaining_bytes: int = 0
    removed: list[str] = field(default_factory=list)  # entry keys, least recently used first

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed_entries": self.removed_entries,
            "freed_bytes": self.freed_bytes,
            "freed_mb": round(self.freed_bytes / MB, 3),
            "removed_temp_files": self.removed_temp_files,
            "remaining_entries": self.remaining_entries,
            "remaining_bytes": self.remaining_bytes,
            "removed": list(self.removed),
        }


def _unlink(path: Path) -> bool:
    """Delete ``path``; ``False`` when another process deleted it first."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


class FeatureCache:
    """A folder of ``<key>.npz`` feature sets, at most ``max_bytes`` of them (0: no bound).

    ``clock`` gives the time recorded as an entry's use (tests pass a fake one).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_bytes: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0: no bound), got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: CacheSettings, root: str | Path | None = None) -> FeatureCache:
        """The cache every writer uses (CLI commands and workers): ``ZOORANK_CACHE_DIR`` (or
        ``root``) bounded by ``ZOORANK_CACHE_MAX_MB``."""
        return cls(settings.cache_dir if root is None else root, max_bytes=settings.cache_max_mb * MB)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def _touch(self, path: Path) -> None:
        """Record a use: the entry's mtime is its last use."""
        now = self.clock()
        with contextlib.suppress(OSError):  # evicted meanwhile, or a read-only cache: still a read
            os.utime(path, (now, now))

    def get(self, key: str, *, taps: bool = True) -> FeatureSet | None:
        """The entry's features and a recorded use, or ``None`` (absent, evicted, damaged, of
        another format). ``taps=False`` leaves the layer taps unread (``taps`` empty)."""
        from zoorank.features.extract import FeatureSet

        path = self.path(key)
        try:
            with open(path, "rb") as handle:  # open first: an eviction from here on cannot break the read
                self._touch(path)
                with np.load(handle, allow_pickle=False) as npz:
                    archive = EntryReader(npz, version=CACHE_FORMAT)
                    tap_names = [str(n) for n in archive["tap_names"]] if taps else []
                    return FeatureSet(
                        prelogits=archive["prelogits"],
                        logits=archive["logits"],
                        taps={name: archive[f"tap_{i}"] for i, name in enumerate(tap_names)},
                        tap_rows=archive["tap_rows"] if taps else np.zeros(0, dtype=np.int64),
                        seconds=float(archive["seconds"]),
                        images_per_second=float(archive["images_per_second"]),
                        from_cache=True,
                    )
        except FileNotFoundError:
            return None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # a damaged entry is recomputed

    def put(self, key: str, features: FeatureSet, *, dataset: str = "") -> bool:
        """Write the entry, then evict down to the bound. ``False``: not written, because the
        entry alone is larger than the bound. ``dataset``: the fingerprint of the data it was
        computed on, stored beside the features so that :meth:`remove_dataset` can find it."""
        arrays = {f"tap_{i}": maps for i, maps in enumerate(features.taps.values())}
        size = sum(
            a.nbytes for a in (features.prelogits, features.logits, features.tap_rows, *arrays.values())
        )
        if self.max_bytes and size > self.max_bytes:
            log.info(
                "feature cache: %s not cached, %.1f MB is more than the whole cache (%.1f MB)",
                key,
                size / MB,
                self.max_bytes / MB,
            )
            return False
        path = self.path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=TEMP_SUFFIX)
            with os.fdopen(fd, "wb") as handle:
                members = {
                    "prelogits": features.prelogits,
                    "logits": features.logits,
                    "tap_names": np.asarray(list(features.taps), dtype=str),
                    "tap_rows": features.tap_rows,
                    "seconds": np.asarray(features.seconds),
                    "images_per_second": np.asarray(features.images_per_second),
                    "dataset": np.asarray(dataset),
                }
                write_entry(handle, members | arrays, version=CACHE_FORMAT)
            now = self.clock()
            os.utime(tmp, (now, now))
            written = os.stat(tmp).st_size
            if self.max_bytes and written > self.max_bytes:  # the estimate above left out headers
                Path(tmp).unlink()
                return False
            os.replace(tmp, path)
        except OSError as exc:  # a full disk, an unwritable folder: the job goes on uncached
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            log.warning("feature cache: %s not written: %s", key, exc)
            return False
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise
        if self.max_bytes:
            self.prune(max_bytes=self.max_bytes, keep=path)
        return True

    # -- listing and eviction -------------------------------------------------------------

    def _files(self) -> tuple[list[CacheEntry], list[CacheEntry]]:
        """(entries least recently used first, temp files); files deleted meanwhile skipped."""
        entries: list[CacheEntry] = []
        temps: list[CacheEntry] = []
        try:
            shards = [d for d in os.scandir(self.root) if len(d.name) == 2 and d.is_dir()]
        except FileNotFoundError:
            return entries, temps
        for shard in shards:
            try:
                names = list(os.scandir(shard.path))
            except FileNotFoundError:
                continue
            for item in names:
                is_entry = ENTRY_NAME.match(item.name) is not None and item.name.startswith(shard.name)
                if not is_entry and not item.name.endswith(TEMP_SUFFIX):
                    continue  # not ours: never touched
                try:
                    stat = item.stat()
                except FileNotFoundError:
                    continue
                found = CacheEntry(Path(item.path), stat.st_size, stat.st_mtime)
                (entries if is_entry else temps).append(found)
        entries.sort(key=lambda e: (e.last_used, e.path.name))
        return entries, temps

    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        return self._files()[0]

    def stats(self) -> dict[str, Any]:
        entries, temps = self._files()
        oldest = entries[0].last_used if entries else None
        newest = max(e.last_used for e in entries) if entries else None
        total = sum(e.size for e in entries)
        return {
            "root": str(self.root),
            "entries": len(entries),
            "bytes": total,
            "mb": round(total / MB, 3),
            "limit_bytes": self.max_bytes,
            "limit_mb": round(self.max_bytes / MB, 3),
            "oldest_use": _iso(oldest),
            "newest_use": _iso(newest),
            "temp_files": len(temps),
            "temp_bytes": sum(t.size for t in temps),
        }

    def remove_dataset(self, fingerprint: str) -> PruneReport:
        """Delete every entry computed on the dataset with this fingerprint (a deleted upload's).
        Entries written before the fingerprint was stored with them are not found: the bound
        evicts them in time."""
        entries, _ = self._files()
        report = PruneReport()
        for entry in entries:
            try:
                with np.load(entry.path, allow_pickle=False) as archive:
                    found = "dataset" in archive.files and str(archive["dataset"]) == fingerprint
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
                continue  # gone meanwhile, or damaged: not this dataset's as far as can be told
            if found and _unlink(entry.path):
                report.removed_entries += 1
                report.freed_bytes += entry.size
                report.removed.append(entry.path.stem)
            elif not found:
                report.remaining_entries += 1
                report.remaining_bytes += entry.size
        return report

    def prune(
        self,
        *,
        max_bytes: int | None = None,
        older_than_seconds: float | None = None,
        everything: bool = False,
        keep: Path | None = None,
    ) -> PruneReport:
        """Delete entries: all of them (``everything``), those unused for ``older_than_seconds``,
        then the least recently used until at most ``max_bytes`` remain; never ``keep`` (the
        entry a write just made). Temp files older than an hour (killed writers') go too; younger
        ones are writes under way."""
        entries, temps = self._files()
        now = self.clock()
        report = PruneReport()
        for temp in temps:
            if now - temp.last_used > STALE_TEMP_SECONDS and _unlink(temp.path):
                report.removed_temp_files += 1
        total = sum(e.size for e in entries)
        kept: list[CacheEntry] = []
        for entry in entries:
            unused = older_than_seconds is not None and now - entry.last_used > older_than_seconds
            over = max_bytes is not None and total > max_bytes
            if entry.path != keep and (everything or unused or over):
                if _unlink(entry.path):  # else another evictor took it: gone all the same
                    report.removed_entries += 1
                    report.freed_bytes += entry.size
                    report.removed.append(entry.path.stem)
                total -= entry.size
            else:
                kept.append(entry)
        report.remaining_entries = len(kept)
        report.remaining_bytes = sum(e.size for e in kept)
        if report.removed_entries:
            log.info(
                "feature cache: removed %d entries (%.1f MB), %d left (%.1f MB)",
                report.removed_entries,
                report.freed_bytes / MB,
                report.remaining_entries,
                report.remaining_bytes / MB,
            )
        return report
