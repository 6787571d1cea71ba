"""Bytes per model in the feature cache for the demo's job, before and after compact entries.

    python -m zoorank_bench.cache_size [--models tf_efficientnet_lite0,mobilenetv2_100,...]

The demo's job: ``builtin:digits``, 50 images per class at 64 px, the default ranking's scores
(``zoorank demo``); and the same job with ``betti_decay``, whose taps are taken at the model's
native size over the 5 tap images per class (the 357 MB entries of issue 23). One forward pass
per (model, resolution) gives both figures: format 1 is what ``np.savez`` wrote (every array
as float32, the job pass with its taps whether or not a score read them; measured equal to the
old code's entry, 33,700,620 bytes for tf_efficientnet_lite0), format 2 is
:func:`zoorank.features.packing.write_entry` with the taps only where a score reads them.
Writes ``benchmarks/results/cache_size.{json,md}``.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from zoorank.features.extract import FeatureSet, extract_features
from zoorank.features.packing import write_entry
from zoorank.features.preprocess import architecture_preprocessing
from zoorank.policy import DEFAULT_RANKING
from zoorank.rank import RankOptions, prepare_dataset, reads_job_taps
from zoorank.settings import enter_offline_by_default
from zoorank.zoo import create_model, get_model_spec

RESULTS = Path(__file__).parent / "results"
MODELS = ",".join(
    (
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite0@random",
        "tf_efficientnet_lite1",
        "tf_efficientnet_lite2",
        "mobilenetv2_100",
    )
)


def _members(features: FeatureSet, *, taps: bool) -> dict[str, np.ndarray]:
    names = list(features.taps) if taps else []
    members = {
        "prelogits": features.prelogits,
        "logits": features.logits,
        "tap_names": np.asarray(names, dtype=str),
        "tap_rows": features.tap_rows if taps else np.zeros(0, np.int64),
        "seconds": np.asarray(features.seconds),
        "images_per_second": np.asarray(features.images_per_second),
        "dataset": np.asarray("0" * 16),
    }
    return members | {f"tap_{i}": maps for i, maps in enumerate(features.taps.values()) if taps}


def _format_1(features: FeatureSet) -> int:
    buffer = io.BytesIO()
    np.savez(buffer, **_members(features, taps=True))  # type: ignore[arg-type]
    return buffer.tell()


def _format_2(features: FeatureSet, *, taps: bool) -> tuple[int, float]:
    buffer = io.BytesIO()
    start = time.perf_counter()
    write_entry(buffer, _members(features, taps=taps), version=2)
    return buffer.tell(), time.perf_counter() - start


def main() -> None:
    enter_offline_by_default()
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args()
    options = RankOptions(samples_per_class=50, input_size=64)
    prepared = prepare_dataset("builtin:digits", options)
    tap_images = prepared.tap_images_only()
    demo = list(DEFAULT_RANKING.scores)
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        spec = get_model_spec(name)
        model = create_model(spec)
        job = extract_features(
            model,
            prepared.dataset.read,
            prepared.rows,
            architecture_preprocessing(spec.architecture, options.input_size),
            tap_rows=prepared.tap_rows,
            device="cpu",
        )
        native = extract_features(
            model,
            tap_images.dataset.read,
            tap_images.rows,
            architecture_preprocessing(spec.architecture, None),
            tap_rows=tap_images.tap_rows,
            device="cpu",
        )
        job_bytes, job_seconds = _format_2(job, taps=reads_job_taps(demo, options))
        native_bytes, native_seconds = _format_2(native, taps=True)
        row = {
            "model": name,
            "demo_scores": demo,
            "job_format_1": _format_1(job),
            "job_format_2": job_bytes,
            "native_format_1": _format_1(native),
            "native_format_2": native_bytes,
            "write_seconds_job": round(job_seconds, 2),
            "write_seconds_native": round(native_seconds, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cache_size.json").write_text(json.dumps(rows, indent=2) + "\n")
    mb = 2**20
    lines = [
        f"Demo job (builtin:digits, 50 per class, 64 px, scores {', '.join(demo)}); + betti_decay adds "
        "a native-size pass over the 50 tap images. MB (2^20 bytes: 341 is issue 23's 357 x 10^6 bytes) "
        "per model; write: seconds to pack format 2 on the loaded 2-core machine.",
        "",
        "| model | demo job: format 1 | format 2 | factor | + betti_decay native: format 1 | format 2 "
        "| factor | write s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        job_factor = r["job_format_1"] / r["job_format_2"]
        native_factor = r["native_format_1"] / r["native_format_2"]
        lines.append(
            f"| {r['model']} | {r['job_format_1'] / mb:.1f} | {r['job_format_2'] / mb:.1f} "
            f"| {job_factor:.1f} "
            f"| {r['native_format_1'] / mb:.0f} | {r['native_format_2'] / mb:.0f} | {native_factor:.2f} "
            f"| {r['write_seconds_native']:.1f} |"
        )
    (RESULTS / "cache_size.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
