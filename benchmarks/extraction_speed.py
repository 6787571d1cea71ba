"""Images/s of zoorank's feature extraction vs a plain timm forward, same model, batch, input.

    python -m benchmarks.extraction_speed [--size 64] [--batch 64] [--images 512]

Writes benchmarks/results/extraction_speed.{json,md}. Extraction = preprocessing from uint8,
channels-last, inference_mode, pre-logits + logits, and (second row) layer taps kept for
the default 5 images per class; the plain forward is ``model(x)`` on a ready float tensor.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from zoorank.data import class_balanced_rows, load_dataset
from zoorank.features.extract import extract_features
from zoorank.features.preprocess import model_preprocessing
from zoorank.settings import enter_offline_by_default
from zoorank.zoo import create_model, get_model_spec

RESULTS = Path(__file__).parent / "results"


def _best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    enter_offline_by_default()
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--models", default="mobilenetv2_100,tf_efficientnet_lite0")
    args = parser.parse_args()
    data = load_dataset("builtin:digits")
    rows = np.arange(args.images)
    tap_rows = class_balanced_rows(data.labels[rows], 5)
    out = []
    for name in args.models.split(","):
        model = create_model(get_model_spec(name))
        prep = model_preprocessing(model, args.size)
        x = prep(data.read(rows))

        def plain() -> None:
            with torch.inference_mode():
                for begin in range(0, len(rows), args.batch):
                    model(x[begin : begin + args.batch])

        extract_features(model, data.read, rows[: args.batch], prep, device="cpu")  # warm-up
        plain()
        t_plain = _best_of(plain)
        t_extract = _best_of(
            lambda: extract_features(model, data.read, rows, prep, batch_size=args.batch, device="cpu")
        )
        t_taps = _best_of(
            lambda: extract_features(
                model, data.read, rows, prep, tap_rows=tap_rows, batch_size=args.batch, device="cpu"
            )
        )
        row = {
            "model": name,
            "size": args.size,
            "batch": args.batch,
            "images": len(rows),
            "threads": torch.get_num_threads(),
            "plain_timm_img_s": len(rows) / t_plain,
            "extract_img_s": len(rows) / t_extract,
            "extract_with_taps_img_s": len(rows) / t_taps,
        }
        print(json.dumps(row))
        out.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "extraction_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "| model | px | batch | plain timm img/s | zoorank extract img/s | with taps img/s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['size']} | {r['batch']} | {r['plain_timm_img_s']:.0f} | "
        f"{r['extract_img_s']:.0f} | {r['extract_with_taps_img_s']:.0f} |"
        for r in out
    ]
    (RESULTS / "extraction_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
