"""Ground truth: how well each model actually does on the target once trained on it.

Two modes (DESIGN §6):

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from zoorank.data import ImageDataset
from zoorank.errors import InvalidInputError
from zoorank.features.extract import resolve_device
from zoorank.features.preprocess import model_preprocessing
from zoorank.validate.powergrad import LOSSES, make_loss
from zoorank.validation_request import MAX_SEEDS

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
            if isinstance(value, str) and not isinstance(default, str):
                try:  # from the CLI (k=v) or a form: "3" -> 3, "1e-3" -> 0.001
                    as_float = float(value)
                    values[key] = int(as_float) if isinstance(default, int) else as_float
                except ValueError:
                    raise InvalidInputError(
                        f"training setting {key} must be a number, got {value!r}", field="settings"
                    ) from None
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
            (16 <= self.input_size <= 1024, "input_size must be between 16 and 1024 pixels"),
            (1 <= self.epochs <= 1000, "epochs must be between 1 and 1000"),
            (self.batch_size >= 2, "batch_size must be >= 2 (batch norm needs 2 samples)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.patience >= 1, "patience must be >= 1"),
            (1 <= self.min_epochs <= 1000, "min_epochs must be between 1 and 1000"),
            (self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda"),
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


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for begin in range(0, len(x), batch):
            correct += int((model(x[begin : begin + batch]).argmax(1) == y[begin : begin + batch]).sum())
    return correct / max(len(x), 1)


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
    """Fine-tune every weight of ``model`` (a timm model, weights loaded) on ``split.train``.

    The classifier is replaced by a fresh ``num_classes`` head initialised under ``seed``; the
    model's own preprocessing at ``settings.input_size``; ``settings.epochs`` epochs of the
    loss (``ce`` or ``powergrad`` with ``alpha``) with a per-step cosine learning rate; after
    each epoch the validation accuracy, stopping after ``patience`` epochs without a new best
    (but not before epoch ``min_epochs``);
    the best epoch's weights give the test accuracy and the final train accuracy (which says
    whether the schedule was long enough for the model to fit the train split at all).
    """
    start = time.perf_counter()
    loss_fn = make_loss(loss, alpha)
    device = resolve_device(settings.device)
    preprocessing = model_preprocessing(model, settings.input_size)

    def tensors(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = preprocessing(dataset.read(rows)).to(device)
        return x, torch.as_tensor(dataset.labels[rows], dtype=torch.long, device=device)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        tensors(split.train),
        tensors(split.val),
        tensors(split.test),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_classifier(dataset.num_classes)  # type: ignore[operator]
        model.to(device)
        generator = torch.Generator().manual_seed(seed)
        params = [p for p in model.parameters() if p.requires_grad]
        if settings.optimizer == "adamw":
            optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                params, lr=settings.lr, weight_decay=settings.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                params,
                lr=settings.lr,
                momentum=settings.momentum,
                weight_decay=settings.weight_decay,
                nesterov=True,
            )
        n = len(train_x)
        steps_per_epoch = max(1, n // settings.batch_size)  # drop the ragged last batch
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=steps_per_epoch * settings.epochs
        )
        best_val, best_epoch, best_state = -1.0, 0, None
        history: list[dict[str, float]] = []
        epoch = 0
        for epoch in range(1, settings.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator).to(device)
            total = 0.0
            for step in range(steps_per_epoch):
                batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
                optimizer.zero_grad(set_to_none=True)
                value = loss_fn(model(train_x[batch]), train_y[batch])
                if not torch.isfinite(value):
                    raise InvalidInputError(
                        f"training diverged (loss {float(value)}) at epoch {epoch}; lower the learning rate",
                        field="settings",
                    )
                value.backward()
                optimizer.step()
                scheduler.step()
                total += float(value.detach())
            val_acc = _accuracy(model, val_x, val_y)
            history.append({"epoch": epoch, "loss": total / steps_per_epoch, "val_accuracy": val_acc})
            if val_acc > best_val:
                best_val, best_epoch = val_acc, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch >= settings.min_epochs and epoch - best_epoch >= settings.patience:
                break
        last_train_acc = _accuracy(model, train_x, train_y)
        if best_state is not None:
            model.load_state_dict(best_state)
        test_acc = _accuracy(model, test_x, test_y)
        train_acc = _accuracy(model, train_x, train_y)
    return RunResult(
        seed=seed,
        accuracy=test_acc,
        val_accuracy=best_val,
        train_accuracy=train_acc,
        last_train_accuracy=last_train_acc,
        epochs_run=epoch,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
        history=history,
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
