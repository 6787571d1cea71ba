"""Build the controlled zoo: small timm models trained here on a source task, saved as
``.safetensors`` and used through ``ARCH@file:PATH`` references; plus a pretrained model with
its top stages re-initialised.

Models keep timm's default 1000-class head, trained on the source labels (0..k-1): the files
load into ``timm.create_model(arch)`` unchanged, and their logits are real source logits for
LEEP/NCE-style scores (the never-seen classes are simply never predicted).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoorank.features.preprocess import model_preprocessing
from zoorank.zoo import create_model, get_model_spec

from .config import ZooConfig

log = logging.getLogger(__name__)

FASHION_MNIST_TRAIN = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class ZooModel:
    """One model of the benchmark pool: a display label, its model reference, and facts."""

    label: str
    ref: str
    kind: str  # zoo | imagenet | random | reinit
    architecture: str
    source_epochs: float | None = None
    source_accuracy: float | None = None
    seconds: float = 0.0


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def source_data(config: ZooConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST train split, ``source_classes`` only: (train images, labels, held-out
    images, labels), images uint8 (n, 28, 28, 3), labels renumbered 0..k-1."""
    images = _read_idx(FASHION_MNIST_TRAIN / "train-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST_TRAIN / "train-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(config.seed)
    train, held = [], []
    for new, cls in enumerate(config.source_classes):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        train.append((rows[: config.source_per_class], new))
        held.append((rows[config.source_per_class : config.source_per_class + 200], new))

    def stack(parts: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate([r for r, _ in parts])
        y = np.concatenate([np.full(len(r), c) for r, c in parts])
        return np.repeat(images[rows][..., None], 3, axis=-1), y

    return (*stack(train), *stack(held))


def _snapshot_name(arch: str, epochs: float) -> str:
    return f"{arch}_e{epochs:g}".replace(".", "p") + ".safetensors"


def zoo_label(arch: str, epochs: float) -> str:
    return f"{arch}/e{epochs:g}"


def _ref(arch: str, path: Path) -> str:
    return f"{arch}@file:{path}"


def _save(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for begin in range(0, len(x), 256):
            logits = model(x[begin : begin + 256])[:, :classes]
            correct += int((logits.argmax(1) == y[begin : begin + 256]).sum())
    return correct / len(x)


def train_architecture(arch: str, config: ZooConfig, folder: Path) -> list[ZooModel]:
    """Train ``arch`` from a seeded random init on the source task, saving a snapshot after each
    of ``config.snapshot_epochs``; AdamW at a constant learning rate (the snapshots differ only
    in how long they trained)."""
    import timm

    start = time.perf_counter()
    train_x, train_y, held_x, held_y = source_data(config)
    torch.manual_seed(config.seed)
    model = timm.create_model(arch, pretrained=False)  # 1000-way head, see module docstring
    preprocessing = model_preprocessing(model, config.input_size)
    x, y = preprocessing(train_x), torch.as_tensor(train_y)
    hx, hy = preprocessing(held_x), torch.as_tensor(held_y)
    steps_per_epoch = len(x) // config.batch_size
    wanted = {max(1, round(e * steps_per_epoch)): e for e in config.snapshot_epochs}
    out: list[ZooModel] = []

    def snapshot(step: int) -> None:
        if step in wanted:
            epochs = wanted[step]
            path = folder / _snapshot_name(arch, epochs)
            _save(model, path)
            accuracy = _accuracy(model, hx, hy, len(config.source_classes))
            log.info(
                "zoo %s after %g epochs (%d steps): source accuracy %.3f",
                arch,
                epochs,
                step,
                accuracy,
            )
            out.append(
                ZooModel(
                    zoo_label(arch, epochs),
                    _ref(arch, path),
                    "zoo",
                    arch,
                    epochs,
                    accuracy,
                    time.perf_counter() - start,
                )
            )

    train_steps(
        model,
        x,
        y,
        lr=config.lr,
        weight_decay=config.weight_decay,
        batch_size=config.batch_size,
        seed=config.seed,
        steps=max(wanted),
        after_step=snapshot,
    )
    return out


def train_steps(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    steps: int,
    after_step: Callable[[int], None] | None = None,
) -> None:
    """``steps`` AdamW steps of cross-entropy at a constant rate over seeded shuffles of (x, y),
    a new shuffle every epoch; ``after_step(step)`` (1-based) after each."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(x) // batch_size
    order = torch.randperm(len(x), generator=generator)
    for step in range(1, steps + 1):
        within = (step - 1) % steps_per_epoch
        if within == 0 and step > 1:
            order = torch.randperm(len(x), generator=generator)
        batch = order[within * batch_size : (within + 1) * batch_size]
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)


def redraw_top(name: str, stage: int, seed: int) -> tuple[torch.nn.Module, int, int]:
    """Zoo model ``name`` (offline ImageNet weights) with ``blocks[stage:]``, the head
    convolution/norm and the classifier replaced by a random init drawn under ``seed``;
    returns the model, how many tensors were re-drawn and how many there are."""
    import timm

    spec = get_model_spec(name)
    model = create_model(spec)
    torch.manual_seed(seed)
    fresh = timm.create_model(spec.architecture, pretrained=False).state_dict()
    top = [f"blocks.{i}." for i in range(stage, len(model.blocks))]  # type: ignore[arg-type]
    top += ["conv_head.", "bn2.", "classifier."]
    state = model.state_dict()
    replaced = [k for k in state if any(k.startswith(p) for p in top)]
    for key in replaced:
        state[key] = fresh[key]
    model.load_state_dict(state)
    return model, len(replaced), len(state)


def reinit_top(config: ZooConfig, folder: Path) -> ZooModel:
    """``config.reinit_model`` with ``blocks[reinit_from:]`` and the head re-drawn."""
    start = time.perf_counter()
    spec = get_model_spec(config.reinit_model)
    model, replaced, total = redraw_top(config.reinit_model, config.reinit_from, config.seed + 1)
    path = folder / f"{spec.architecture}_top{config.reinit_from}_reinit.safetensors"
    _save(model, path)
    label = f"{spec.architecture}/reinit-top"
    log.info("reinit %s: %d of %d tensors re-drawn", label, replaced, total)
    return ZooModel(
        label,
        _ref(spec.architecture, path),
        "reinit",
        spec.architecture,
        seconds=time.perf_counter() - start,
    )


def build_zoo(config: ZooConfig, folder: Path, *, fresh: bool = False) -> list[ZooModel]:
    """Train (or reuse, when the manifest matches ``config`` and every file exists) the zoo."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    key = hashlib.sha256(json.dumps(config.key(), sort_keys=True).encode()).hexdigest()
    if not fresh and manifest.exists():
        saved = json.loads(manifest.read_text())
        models = [ZooModel(**m) for m in saved.get("models", [])]
        paths = [Path(m.ref.split("@file:", 1)[1]) for m in models]
        if saved.get("key") == key and all(p.exists() for p in paths):
            log.info("zoo: reusing %d models from %s", len(models), folder)
            return models
    models = []
    for arch in config.architectures:
        models.extend(train_architecture(arch, config, folder))
    if config.reinit_model:
        models.append(reinit_top(config, folder))
    manifest.write_text(
        json.dumps({"key": key, "config": config.key(), "models": [m.__dict__ for m in models]}, indent=1)
    )
    return models
