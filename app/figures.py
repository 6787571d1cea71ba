"""What the pages draw from stored results, datasets and confirmations: the job's figures of
what each score saw (from the details it stored), a ranking against ground truth, learning
curves, and images as inline PNG (a dataset's thumbnails, saliency maps). The SVG primitives
are in :mod:`app.charts`."""

from __future__ import annotations

import base64
import functools
import io
import math
from typing import Any

import numpy as np
from sqlalchemy.orm import Session
from zoorank_app import charts
from zoorank_app.db import crud

from zoorank.errors import InvalidInputError


def job_truth_figure(session: Session, job: Any) -> dict[str, Any] | None:
    """The job's ranking against the ground truth stored for its dataset (same content)."""
    from types import SimpleNamespace

    if not job.ranking or not job.dataset_fingerprint:
        return None
    truth = crud.ground_truth(session, dataset=job.dataset)
    rows = []
    for row in job.ranking.get("aggregate", []):
        gt = truth.get((job.dataset_fingerprint, row["model"]))
        rows.append(
            SimpleNamespace(
                model=row["model"],
                rank=row["rank"],
                value=row["value"],
                ground_truth=gt.accuracy if gt else None,
                ground_truth_mode=gt.mode if gt else None,
            )
        )
    return truth_figure(SimpleNamespace(data=rows), None)


def truth_figure(board: Any, score: str | None) -> dict[str, Any] | None:
    """Ranking value against ground truth, with the weighted τ and the top-1 regret, when at
    least 3 ranked models have ground truth (a validation job on this dataset)."""
    from zoorank.groundtruth.agreement import top1_regret, weighted_tau

    rows = [r for r in board.data if r.ground_truth is not None and r.value is not None]
    if len(rows) < 3:
        return None
    # ranks are 1 = best; the value's direction is the board's (the default: higher is better)
    value = np.asarray([-r.rank for r in rows], dtype=float)
    truth = np.asarray([r.ground_truth for r in rows], dtype=float)
    modes = sorted({r.ground_truth_mode for r in rows if r.ground_truth_mode})
    name = score or "the default ranking"
    svg = charts.scatter_chart(
        {r.model: [(float(r.value), float(r.ground_truth))] for r in rows},
        title=f"{name} against ground truth",
        x_label=f"{name} value",
        y_label=f"test accuracy ({', '.join(modes) or 'ground truth'})",
    )
    return {
        "svg": svg,
        "weighted_tau": weighted_tau(value, truth),
        "regret": top1_regret(value, truth),
        "n": len(rows),
    }


BETTI_PROFILE_SCORES = ("betti_slope_norm", "betti_slope", "betti_decay_norm", "betti_decay")


def _curve_grid(details: dict[str, Any] | None) -> list[float]:
    """The thresholds of a Betti score's stored curves, or [] when it has none that fit."""
    if not details or not details.get("taps"):
        return []
    grid: list[float] = details.get("curve_thresholds") or details.get("curve_quantiles") or []
    return grid if grid and all(len(t.get("curve", [])) == len(grid) for t in details["taps"]) else []


def job_figures(results: list[Any]) -> dict[str, Any]:
    """SVG figures of what the scores saw: the Betti profile over depth, the hidden-margin
    distributions, and margins against the distance to the nearest other-class sample."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        if r.value is not None:
            by_model.setdefault(r.model, {})[r.score] = r.details
    figures: dict[str, str] = {}
    profiles = {}
    for model, details in by_model.items():
        source = next((details[s] for s in BETTI_PROFILE_SCORES if details.get(s, {}).get("omega")), None)
        if source is None:
            continue
        omega = np.asarray(source["omega"], dtype=float)
        norm = float(np.linalg.norm(omega))
        if len(omega) > 1 and norm > 0:
            depth = np.linspace(0.0, 1.0, len(omega))
            profiles[model] = list(zip(depth.tolist(), (omega / norm).tolist(), strict=True))
    if profiles:
        figures["betti_profile"] = charts.line_chart(
            profiles,
            title="Normalised Betti profile over depth",
            x_label="depth (first tap 0, last tap 1)",
            y_label="Betti sum / its L2 norm over taps",
        )
    curves = {}
    for model, details in by_model.items():
        source = next((details[s] for s in ("betti_decay", "betti_auc") if _curve_grid(details.get(s))), None)
        if source is None:
            continue
        grid = _curve_grid(source)
        taps = source["taps"]
        picked = sorted({round(i) for i in np.linspace(0, len(taps) - 1, min(6, len(taps)))})
        curves[model] = charts.line_chart(
            {
                f"tap {i + 1} (depth {taps[i]['depth']:.2f})": list(zip(grid, taps[i]["curve"], strict=True))
                for i in picked
            },
            title=f"Betti curves of {model}",
            x_label="threshold η" if source.get("curve_thresholds") else "threshold (quantile of the tap)",
            y_label="β0 + β1 + β2 (class-balanced mean per image)",
        )
    if curves:
        figures["betti_curves"] = curves  # type: ignore[assignment]
    margins = {
        m: d["hidden_margin"]["nuances"]["margin"]
        for m, d in by_model.items()
        if d.get("hidden_margin", {}).get("nuances", {}).get("margin")
    }
    if margins:
        figures["margins"] = charts.box_chart(
            margins,
            title="Hidden margins of held-out samples",
            y_label="margin / sqrt(total feature variance)",
        )
        figures["nuances"] = charts.scatter_chart(
            {
                m: list(
                    zip(
                        by_model[m]["hidden_margin"]["nuances"]["nearest_other_class_distance"][:300],
                        values[:300],
                        strict=False,
                    )
                )
                for m, values in margins.items()
            },
            title="Margin nuances",
            x_label="distance to the nearest other-class sample (normalised)",
            y_label="hidden margin (normalised)",
        )
    return figures


def learning_curves(confirmation: dict[str, Any]) -> str:
    """Validation accuracy against epoch, one line per shortlisted model (in confirmed order, so
    the pick comes first), with a dashed line where each rung of the schedule ends."""
    models = confirmation["result"]["models"]
    schedule = [int(e) for e in (confirmation.get("plan") or {}).get("schedule", [])]
    last = max([*schedule, *(int(h["epoch"]) for m in models for h in m.get("curve", []))], default=1)
    series = {
        m["model"]: [(float(h["epoch"]), h.get("val_accuracy")) for h in m.get("curve", [])] for m in models
    }
    top = max(
        (float(y) for points in series.values() for _, y in points if y is not None and math.isfinite(y)),
        default=1.0,
    )
    return charts.line_chart(
        series,
        title="Learning curves of the confirmation",
        x_label="epoch of fine-tuning",
        y_label="validation accuracy",
        x_range=(0.0, float(last)),
        y_range=(0.0, min(1.0, top * 1.1 + 0.02)),
        x_ticks=charts.integer_ticks(0.0, float(last)),
        marks=[(float(end), f"rung {i} ends") for i, end in enumerate(schedule, start=1)],
    )


def thumbnails(settings: Any, ref: str, per_class: int = 3) -> list[dict[str, Any]]:
    """A few images per class as PNG data URIs (cached per dataset reference); empty when the
    dataset cannot be read here."""
    return _thumbnails(ref, str(settings.upload_dir), per_class)


@functools.lru_cache(maxsize=64)
def _thumbnails(ref: str, upload_dir: str, per_class: int) -> list[dict[str, Any]]:
    from zoorank.data import load_dataset

    try:
        dataset = load_dataset(ref, upload_dir=upload_dir)
        out = []
        for cls, name in enumerate(dataset.class_names[:20]):
            rows = np.flatnonzero(dataset.labels == cls)[:per_class]
            images = dataset.read(rows).mean(axis=-1) / 255.0  # (m, h, w) grey
            out.append({"class": name, "images": [png_data_uri(image.tolist(), scale=2) for image in images]})
        return out
    except InvalidInputError:  # missing on this host (a Debian package, an upload's folder) or unreadable
        return []


def png_data_uri(matrix: list[list[float]], tint: str = "grey", scale: int = 4) -> str:
    """A ``data:image/png`` URI of a matrix of values in [0, 1], scaled up (nearest), grey
    or as a white-to-red heat map; inline, so the page loads nothing from anywhere else."""
    from PIL import Image

    values = np.clip(np.asarray(matrix, dtype=np.float64), 0.0, 1.0)
    level = (255 * values).astype(np.uint8)
    if tint == "heat":
        inverse = 255 - level
        pixels = np.stack([np.full_like(level, 255), inverse, inverse], axis=-1)
        image = Image.fromarray(pixels, "RGB")
    else:
        image = Image.fromarray(level, "L")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
