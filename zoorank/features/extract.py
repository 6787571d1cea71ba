"""One forward pass per batch -> pre-logits ``(n, d)``, source logits ``(n, k)`` and layer taps.

Taps are taken by forward hooks on the modules of :func:`zoorank.features.taps.tap_points`
during the same pass, and kept only for the rows listed in ``tap_rows`` (feature maps are too
large to keep for every sample). Batched, ``torch.inference_mode()``, channels-last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from zoorank.errors import InvalidInputError
from zoorank.features.preprocess import Preprocessing
from zoorank.features.taps import tap_points
from zoorank.settings import default_device


@dataclass
class FeatureSet:
    """What one pass over the data yields. ``taps[name]`` is ``(len(tap_rows), c, h, w)``."""

    prelogits: np.ndarray
    logits: np.ndarray
    taps: dict[str, np.ndarray] = field(default_factory=dict)
    tap_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    seconds: float = 0.0
    images_per_second: float = 0.0
    from_cache: bool = False


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``ZOORANK_DEVICE`` (:func:`zoorank.settings.default_device`), and when that
    is ``auto`` too, CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        device = default_device()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            "device 'cuda' was asked for (by the request or ZOORANK_DEVICE) but no GPU is visible",
            field="device",
        )
    return torch.device(device)


def prelogits_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's head split: ``forward_features`` -> pooled pre-logits -> classifier logits."""
    timm_model: Any = model  # timm's head API, which nn.Module's typing does not know
    pooled = timm_model.forward_head(timm_model.forward_features(x), pre_logits=True)
    return pooled, timm_model.get_classifier()(pooled)


def extract_features(
    model: nn.Module,
    read_images: Callable[[np.ndarray], np.ndarray],
    rows: np.ndarray,
    preprocessing: Preprocessing,
    *,
    tap_rows: np.ndarray | None = None,
    batch_size: int = 64,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> FeatureSet:
    """Run ``model`` once over ``rows`` of a dataset.

    Args:
        read_images: ``rows (b,) -> uint8 (b, h, w, 3)``.
        rows: ``(n,)`` dataset rows, in the order the outputs will have.
        tap_rows: positions ``0..n-1`` (into ``rows``) whose layer taps are kept.
        progress: called with the number of images done after each batch.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if dev.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    half = dev.type == "cuda"
    keep = set() if tap_rows is None else {int(i) for i in tap_rows}
    names = tap_points(model) if keep else []
    modules = dict(model.named_modules())
    captured: dict[str, list[np.ndarray]] = {name: [] for name in names}
    batch_keep: list[torch.Tensor] = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if batch_keep[0].numel():
                captured[name].append(output[batch_keep[0]].float().cpu().numpy())

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    pre, logit = [], []
    start = time.perf_counter()
    try:
        with torch.inference_mode(), torch.autocast(dev.type, enabled=half):
            for begin in range(0, len(rows), batch_size):
                positions = np.arange(begin, min(begin + batch_size, len(rows)))
                x = preprocessing(read_images(rows[positions])).to(dev)
                if dev.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                in_batch = np.asarray([p - begin for p in positions if int(p) in keep], dtype=np.int64)
                batch_keep[:] = [torch.as_tensor(in_batch, device=dev)]
                f, z = prelogits_and_logits(model, x)
                pre.append(f.float().cpu().numpy())
                logit.append(z.float().cpu().numpy())
                if progress is not None:
                    progress(len(positions))
    finally:
        for handle in handles:
            handle.remove()
    seconds = time.perf_counter() - start
    prelogits = np.concatenate(pre).astype(np.float32)
    if not np.isfinite(prelogits).all():
        raise InvalidInputError("the model produced non-finite features on this data", field="models")
    return FeatureSet(
        prelogits=prelogits,
        logits=np.concatenate(logit).astype(np.float32),
        taps={name: np.concatenate(maps).astype(np.float32) for name, maps in captured.items()},
        tap_rows=np.asarray(sorted(keep), dtype=np.int64),
        seconds=seconds,
        images_per_second=len(rows) / seconds if seconds > 0 else float("inf"),
    )
