"""One unit of a confirmation: one model trained through one rung, from the previous rung's
checkpoint, with the trainer ``validate`` uses (:class:`zoorank.groundtruth.training.FineTuneRun`).

A rung ``r`` continues the full schedule from epoch ``schedule[r - 2]`` (0 for the first rung) to
``schedule[r - 1]`` and writes ``rung-r.pt`` at its end only, atomically: a unit that is killed or
cancelled mid-rung leaves nothing behind, and its next attempt starts again from ``rung-(r-1).pt``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoorank.data import ImageDataset
from zoorank.groundtruth.training import Diverged, FineTuneRun, Split, TrainSettings
from zoorank.zoo import ModelSpec, create_model


@dataclass
class UnitResult:
    """What one (model, rung) did: ``history`` holds one entry per epoch trained in the rung
    (``val_accuracy`` None for the epoch that diverged); ``val_correct``: 0/1 per validation
    row at the rung's end (None when it diverged)."""

    model: str
    rung: int
    end_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    val_correct: list[int] | None = None
    diverged: str | None = None
    error: str | None = None  # the unit failed for another reason (the model leaves the run)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rung": self.rung,
            "end_epoch": self.end_epoch,
            "history": self.history,
            "val_correct": self.val_correct,
            "diverged": self.diverged,
            "error": self.error,
            "seconds": self.seconds,
        }


def checkpoint_dir(root: Path, model: str) -> Path:
    """Where a model's rung checkpoints live under a confirmation's folder ``root``."""
    return root / hashlib.sha256(model.encode()).hexdigest()[:16]


def train_unit(
    spec: ModelSpec,
    dataset: ImageDataset,
    split: Split,
    settings: TrainSettings,
    *,
    schedule: list[int],
    rung: int,
    checkpoints: Path,
    loss: str = "ce",
    alpha: float = 0.25,
    seed: int = 0,
    should_stop: Callable[[], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> UnitResult:
    """Train ``spec`` through rung ``rung`` (1-based) of ``schedule`` (the epoch at each rung's
    end; ``settings.epochs`` is taken to be ``schedule[-1]``, so every rung continues one cosine
    schedule). ``checkpoints``: this model's folder (:func:`checkpoint_dir`). ``should_stop`` is
    called before every step and may raise to abandon the rung (nothing is written);
    ``on_epoch(epoch, end_epoch)`` after each epoch. A diverged loss ends the rung with the
    reason and no checkpoint."""
    start = time.perf_counter()
    end = schedule[rung - 1]
    begin = schedule[rung - 2] if rung > 1 else 0
    settings = TrainSettings.from_dict({**settings.to_dict(), "epochs": schedule[-1]})
    run = FineTuneRun(create_model(spec), dataset, split, settings, loss=loss, alpha=alpha, seed=seed)
    if rung > 1:
        previous = checkpoints / f"rung-{rung - 1}.pt"
        if not previous.exists():
            raise FileNotFoundError(f"{spec.name}: the checkpoint of rung {rung - 1} is missing ({previous})")
        run.restore(torch.load(previous, map_location=run.device, weights_only=True))
        if run.epoch != begin:
            raise RuntimeError(
                f"{spec.name}: rung {rung - 1} checkpoint is at epoch {run.epoch}, not {begin}"
            )
    result = UnitResult(model=spec.name, rung=rung, end_epoch=end)
    for epoch in range(begin + 1, end + 1):
        try:
            entry = run.train_epoch(should_stop)
        except Diverged as exc:
            result.history.append({"epoch": epoch, "loss": None, "val_accuracy": None})
            result.diverged = str(exc)
            break
        result.history.append({k: float(v) if k != "epoch" else int(v) for k, v in entry.items()})
        if on_epoch is not None:
            on_epoch(epoch, end)
    if result.diverged is None:
        result.val_correct = [int(v) for v in run.val_correct()]
        checkpoints.mkdir(parents=True, exist_ok=True)
        target = checkpoints / f"rung-{rung}.pt"
        partial = target.with_suffix(f".{os.getpid()}.part")
        torch.save(run.checkpoint(), partial)
        os.replace(partial, target)  # the rung's checkpoint appears whole, or not at all
    result.seconds = time.perf_counter() - start
    return result
