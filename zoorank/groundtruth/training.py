"""Ground truth: how well each model actually does on the target once trained on it.

Two modes (docs/design.md §6):

* ``linear`` -- frozen backbone: a multinomial logistic regression on the pipeline's cached
  pre-logits (standardised; ``C`` chosen on the validation split), fitted on the train split,
  accuracy on the test split. Deterministic: every seed gives the same number.
* ``finetune`` -- every weight trained: a fresh classifier head (initialised by the seed),
  AdamW or SGD with a cosine schedule over a fixed small number of epochs, early stopping on
  validation accuracy (the best epoch's weights are restored), accuracy on the test split.
  CPU-friendly: small input size (default 32 px), the images preprocessed once.

The split is stratified and seeded by ``split_seed`` and the same for every model and seed, so
seeds vary only the training (head initialisation, batch order).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from zoorank.data import ImageDataset
from zoorank.errors import InvalidInputError
from zoorank.features.extract import resolve_device
from zoorank.features.preprocess import model_preprocessing
from zoorank.groundtruth.powergrad import LOSSES, make_loss
from zoorank.settings import DEVICES
from zoorank.validation_request import MAX_SEEDS
from zoorank.values import as_number

MODES = ("linear", "finetune")
OPTIMIZERS = ("adamw", "sgd")
LINEAR_C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass
class TrainSettings:
    """How ground truth is obtained (everything but mode, loss and α, which ``validate`` takes).

    Split sizes are per class; ``test_per_class <= 0`` takes every row left after train and
    validation. Defaults fine-tune a small model on 500 images at 32 px in seconds on a CPU.
    """

    train_per_class: int = 50
    val_per_class: int = 20
    test_per_class: int = 100
    split_seed: int = 0
    input_size: int = 32
    epochs: int = 6
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    patience: int = 2
    # Early stopping may end a run only from this epoch on: a random-init model can sit at
    # chance on validation for several epochs before it starts to learn.
    min_epochs: int = 1
    device: str = "auto"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainSettings:
        """Settings from JSON/CLI options (numbers may come as strings); unknown names are
        refused with the known ones."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown training setting(s) {', '.join(unknown)}; settings: " + ", ".join(sorted(known)),
                field="settings",
            )
        defaults = cls()
        for key, value in values.items():
            default = getattr(defaults, key)
            if isinstance(default, str):
                continue
            kind = float if isinstance(default, float) else int
            values[key] = as_number(value, f"training setting {key}", kind, field="settings")
        try:
            parsed = cls(**values)
        except TypeError as exc:
            raise InvalidInputError(str(exc), field="settings") from None
        parsed.validate()
        return parsed

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the first bad setting."""
        checks = [
            (self.train_per_class >= 2, "train_per_class must be >= 2"),
            (self.val_per_class >= 1, "val_per_class must be >= 1"),
            (self.split_seed >= 0, "split_seed must be >= 0"),
            (16 <= self.input_size <= 1024, "input_size must be between 16 and 1024 pixels"),
            (1 <= self.epochs <= 1000, "epochs must be between 1 and 1000"),
            (self.batch_size >= 2, "batch_size must be >= 2 (batch norm needs 2 samples)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.patience >= 1, "patience must be >= 1"),
            (1 <= self.min_epochs <= 1000, "min_epochs must be between 1 and 1000"),
            (self.device in DEVICES, "device must be auto, cpu or cuda"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message, field="settings")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def split(self, labels_n: np.ndarray) -> Split:
        """The train / validation / test rows these settings take from ``labels_n``."""
        return split_rows(
            labels_n,
            train=self.train_per_class,
            val=self.val_per_class,
            test=self.test_per_class,
            seed=self.split_seed,
        )


@dataclass
class Split:
    """Disjoint stratified row sets of one dataset (sorted row indices)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_rows(labels_n: np.ndarray, *, train: int, val: int, test: int, seed: int) -> Split:
    """Per class: ``train`` rows, then ``val``, then ``test`` (``<= 0``: all the rest), drawn
    without replacement by ``seed``. Refuses a class too small for train + val + 1 test row."""
    labels_n = np.asarray(labels_n)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels_n):
        rows = rng.permutation(np.flatnonzero(labels_n == cls))
        if rows.size < train + val + 1:
            raise InvalidInputError(
                f"class {cls} has {rows.size} samples; the split needs train {train} + val {val}"
                " + at least 1 test per class; lower train_per_class/val_per_class",
                field="settings",
            )
        rest = rows[train + val :]
        parts["train"].append(rows[:train])
        parts["val"].append(rows[train : train + val])
        parts["test"].append(rest if test <= 0 else rest[:test])
    return Split(**{name: np.sort(np.concatenate(p)) for name, p in parts.items()})


@dataclass
class RunResult:
    """One training run: test and best validation accuracy, and how it went."""

    seed: int
    accuracy: float
    val_accuracy: float
    train_accuracy: float | None = None  # with the best epoch's weights (the ones tested)
    last_train_accuracy: float | None = None  # with the last epoch's weights
    epochs_run: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    c_grid: tuple[float, ...] = LINEAR_C_GRID,
) -> tuple[float, float, float]:
    """Standardised multinomial logistic regression: ``C`` from ``c_grid`` by validation
    accuracy (ties -> the smaller C), refitted on train. Returns ``(test_acc, val_acc, C)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    tx, vx, sx = (scaler.transform(a) for a in (train_x, val_x, test_x))
    best: tuple[float, float, Any] | None = None
    for c in c_grid:
        probe = LogisticRegression(C=c, max_iter=2000).fit(tx, train_y)
        val_acc = float((probe.predict(vx) == val_y).mean())
        if best is None or val_acc > best[0]:
            best = (val_acc, c, probe)
    assert best is not None
    val_acc, c, probe = best
    return float((probe.predict(sx) == test_y).mean()), val_acc, float(c)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> np.ndarray:
    """0/1 per row: the model's top class is the label."""
    model.eval()
    out = []
    with torch.inference_mode():
        for begin in range(0, len(x), batch):
            out.append((model(x[begin : begin + batch]).argmax(1) == y[begin : begin + batch]).cpu().numpy())
    return np.concatenate(out).astype(np.int8) if out else np.zeros(0, np.int8)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    return int(_correct(model, x, y, batch).sum()) / max(len(x), 1)


class Diverged(InvalidInputError):
    """A fine-tuning step gave a non-finite loss (NaN or inf)."""


class FineTuneRun:
    """One fine-tuning run of every weight of ``model``, advanced an epoch at a time and
    resumable from :meth:`checkpoint` in another process (the confirmation stage trains a rung,
    saves, and the next rung may run on another worker).

    The classifier is replaced by a fresh ``num_classes`` head initialised under ``seed``; the
    model's own preprocessing at ``settings.input_size`` (the images preprocessed once); the
    loss ``ce`` or ``powergrad`` with ``alpha``; AdamW or SGD with a per-step cosine learning
    rate over ``settings.epochs`` epochs. The run keeps its own random state (head, dropout,
    batch order), so a run resumed from a checkpoint continues exactly as one that never
    stopped (on CPU). Test rows are read only when :meth:`accuracy` asks for them.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: ImageDataset,
        split: Split,
        settings: TrainSettings,
        *,
        loss: str = "ce",
        alpha: float = 0.25,
        seed: int = 0,
    ) -> None:
        self.model, self.dataset, self.split, self.settings, self.seed = model, dataset, split, settings, seed
        self.loss_fn = make_loss(loss, alpha)
        self.device = resolve_device(settings.device)
        self._preprocessing = model_preprocessing(model, settings.input_size)
        self.train_x, self.train_y = self.tensors(split.train)
        self.val_x, self.val_y = self.tensors(split.val)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.reset_classifier(dataset.num_classes)  # type: ignore[operator]
            self._rng = torch.get_rng_state()
        model.to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        if settings.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                params, lr=settings.lr, weight_decay=settings.weight_decay
            )
        else:
            self.optimizer = torch.optim.SGD(
                params,
                lr=settings.lr,
                momentum=settings.momentum,
                weight_decay=settings.weight_decay,
                nesterov=True,
            )
        self.steps_per_epoch = max(1, len(self.train_x) // settings.batch_size)  # drop the ragged last batch
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.steps_per_epoch * settings.epochs
        )
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    def tensors(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._preprocessing(self.dataset.read(rows)).to(self.device)
        return x, torch.as_tensor(self.dataset.labels[rows], dtype=torch.long, device=self.device)

    def train_epoch(self, should_stop: Callable[[], None] | None = None) -> dict[str, float]:
        """One more epoch, then the validation accuracy; returns (and keeps) its history entry
        ``{"epoch", "loss", "val_accuracy", "seconds"}``. ``should_stop`` is called before every
        step and may raise (a cancelled job) to end the epoch with nothing changed outside the
        run. A non-finite loss raises :class:`Diverged`."""
        start = time.perf_counter()
        epoch = self.epoch + 1
        n, batch_size = len(self.train_x), self.settings.batch_size
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng)
            self.model.train()
            order = torch.randperm(n, generator=self.generator).to(self.device)
            total = 0.0
            for step in range(self.steps_per_epoch):
                if should_stop is not None:
                    should_stop()
                batch = order[step * batch_size : (step + 1) * batch_size]
                self.optimizer.zero_grad(set_to_none=True)
                value = self.loss_fn(self.model(self.train_x[batch]), self.train_y[batch])
                if not torch.isfinite(value):
                    raise Diverged(
                        f"training diverged (loss {float(value.detach())}) at epoch {epoch};"
                        " lower the learning rate",
                        field="settings",
                    )
                value.backward()
                self.optimizer.step()
                self.scheduler.step()
                total += float(value.detach())
            self._rng = torch.get_rng_state()
        self.epoch = epoch
        entry = {
            "epoch": epoch,
            "loss": total / self.steps_per_epoch,
            "val_accuracy": _accuracy(self.model, self.val_x, self.val_y),
            "seconds": time.perf_counter() - start,
        }
        self.history.append(entry)
        return entry

    def val_correct(self) -> np.ndarray:
        """0/1 per validation row (``split.val`` order): whether the model, as it is now, gets
        it right (what an interval over validation rows resamples)."""
        return _correct(self.model, self.val_x, self.val_y)

    def accuracy(self, which: str = "test") -> float:
        """Accuracy of the model as it is now on the ``train``, ``val`` or ``test`` rows."""
        if which == "train":
            return _accuracy(self.model, self.train_x, self.train_y)
        if which == "val":
            return _accuracy(self.model, self.val_x, self.val_y)
        return _accuracy(self.model, *self.tensors(self.split.test))

    def checkpoint(self) -> dict[str, Any]:
        """Everything that resumes the run (:meth:`restore`): weights, optimiser, schedule and
        random state, epochs done and their history."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "rng": self._rng,
            "epoch": self.epoch,
            "history": list(self.history),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self._rng = state["rng"]
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])


def finetune_accuracy(
    model: nn.Module,
    dataset: ImageDataset,
    split: Split,
    settings: TrainSettings,
    *,
    loss: str = "ce",
    alpha: float = 0.25,
    seed: int = 0,
) -> RunResult:
    """Fine-tune every weight of ``model`` (a timm model, weights loaded) on ``split.train``
    (a :class:`FineTuneRun`): after each epoch the validation accuracy, stopping after
    ``patience`` epochs without a new best (but not before epoch ``min_epochs``); the best
    epoch's weights give the test accuracy and the final train accuracy (which says whether the
    schedule was long enough for the model to fit the train split at all).
    """
    start = time.perf_counter()
    run = FineTuneRun(model, dataset, split, settings, loss=loss, alpha=alpha, seed=seed)
    best_val, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, settings.epochs + 1):
        val_acc = run.train_epoch()["val_accuracy"]
        if val_acc > best_val:
            best_val, best_epoch = val_acc, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch >= settings.min_epochs and epoch - best_epoch >= settings.patience:
            break
    last_train_acc = run.accuracy("train")
    if best_state is not None:
        model.load_state_dict(best_state)
    return RunResult(
        seed=seed,
        accuracy=run.accuracy("test"),
        val_accuracy=best_val,
        train_accuracy=run.accuracy("train"),
        last_train_accuracy=last_train_acc,
        epochs_run=run.epoch,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
        history=[{k: v for k, v in h.items() if k != "seconds"} for h in run.history],
    )


def check_request(mode: str, loss: str, alpha: float, seeds: Sequence[Any]) -> list[int]:
    """One check of a ground-truth request (mode, loss, α, seeds), used by every entry point;
    returns the seeds as ints.

    Raises:
        InvalidInputError: naming ``mode``, ``loss``, ``alpha`` or ``seeds``.
    """
    check_mode(mode, loss, alpha)
    if any(isinstance(s, bool) or not isinstance(s, int | np.integer) for s in seeds):
        raise InvalidInputError(f"seeds must be integers, got {list(seeds)!r}", field="seeds")
    out = [int(s) for s in seeds]
    if not 1 <= len(out) <= MAX_SEEDS or len(set(out)) != len(out):
        raise InvalidInputError(
            f"seeds must list 1 to {MAX_SEEDS} distinct integers, got {out}", field="seeds"
        )
    return out


def check_mode(mode: str, loss: str, alpha: float) -> None:
    """Refuse an unknown mode or loss, or a PowerGrad α outside (0, 1]."""
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if loss not in LOSSES:
        raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}", field="loss")
    if mode == "linear" and loss != "ce":
        raise InvalidInputError(
            "the linear mode fits a logistic regression; the loss applies to finetune only",
            field="loss",
        )
    make_loss(loss, alpha)
