"""On-disk feature cache keyed by content, so a new score never re-runs a model.

Key: sha256 of (model architecture, weights digest, preprocessing, dataset fingerprint,
sample ids, tap rows). Entries are ``.npz`` files written atomically (temp file + rename), so
two workers racing on the same key both end with a complete file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from zoorank.features.extract import FeatureSet

CACHE_FORMAT = 1


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


class FeatureCache:
    """A folder of ``<key>.npz`` feature sets."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> FeatureSet | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                tap_names = [str(n) for n in archive["tap_names"]]
                return FeatureSet(
                    prelogits=archive["prelogits"],
                    logits=archive["logits"],
                    taps={name: archive[f"tap_{i}"] for i, name in enumerate(tap_names)},
                    tap_rows=archive["tap_rows"],
                    seconds=float(archive["seconds"]),
                    images_per_second=float(archive["images_per_second"]),
                    from_cache=True,
                )
        except (OSError, KeyError, ValueError):
            return None  # a damaged entry is recomputed

    def put(self, key: str, features: FeatureSet) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"tap_{i}": maps for i, maps in enumerate(features.taps.values())}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    prelogits=features.prelogits,
                    logits=features.logits,
                    tap_names=np.asarray(list(features.taps), dtype=str),
                    tap_rows=features.tap_rows,
                    seconds=features.seconds,
                    images_per_second=features.images_per_second,
                    **arrays,  # type: ignore[arg-type]
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
