"""Model populations of the held-out benchmark, and two more that look like what users bring.

A default fitted on one population of models can learn that population (issue 21): the
benchmark therefore groups its models into populations and judges every candidate default on
(held-out target x held-out population) folds. :func:`population` names each model's.

The two populations added here:

* ``intermediate`` -- intermediate-task transfer: each offline ImageNet model fine-tuned
  briefly (one epoch, 64 px) on the source task of the controlled zoo (Fashion-MNIST *train*
  split, classes 0-4), as users fine-tune a public checkpoint on a related task before the
  target; 4 models, four architectures.
* ``scratch-glyphs`` -- other architectures trained here, on another source task: four timm
  architectures that no other population has (``resnet18``, ``lcnet_050``, ``tinynet_e``,
  ``repvgg_a0``), trained from a seeded random init for 8 epochs at 32 px on generated glyphs
  (letters A-J in random sizes, places, angles and colours); 4 models.

Both keep timm's 1000-way head trained on the source labels (as the controlled zoo does), so
their logits are real source logits for LEEP-style scores.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoorank.features.preprocess import model_preprocessing
from zoorank.zoo import create_model, get_model_spec

from ..ranking.config import OFFLINE_MODELS, ZooConfig
from ..ranking.zoo import ZooModel, _accuracy, _ref, _save, source_data, train_steps

log = logging.getLogger(__name__)

# kind (ZooModel.kind) -> population. The controlled zoo is one population per source task;
# it has one source task (Fashion-MNIST train, classes 0-4).
POPULATIONS: dict[str, str] = {
    "imagenet": "imagenet-twins",
    "random": "imagenet-twins",
    "reinit": "reinit",
    "zoo": "zoo:fashion0-4",
    "intermediate": "intermediate:fashion0-4",
    "scratch-glyphs": "scratch:glyphs",
}
# Populations added for issue 21 (the runner can be limited to them: only new units compute).
NEW_KINDS = ("intermediate", "scratch-glyphs")

SCRATCH_ARCHITECTURES = ("resnet18", "lcnet_050", "tinynet_e", "repvgg_a0")
GLYPHS = "ABCDEFGHIJ"


def population(kind: str) -> str:
    """The population of a model of ``kind`` (see :data:`POPULATIONS`)."""
    return POPULATIONS[kind]


@dataclass(frozen=True)
class TrainRecipe:
    """A short supervised run on a source task: AdamW at a constant rate, seeded."""

    epochs: float
    input_size: int
    lr: float
    batch_size: int = 32
    weight_decay: float = 0.05
    seed: int = 0


INTERMEDIATE = TrainRecipe(epochs=1.0, input_size=64, lr=3e-4)
SCRATCH = TrainRecipe(epochs=8.0, input_size=32, lr=2e-3, batch_size=64)


def glyph_data(per_class: int = 500, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generated glyphs, 10 classes (letters A-J): (train images, labels, held-out images,
    labels), uint8 (n, 28, 28, 3); 200 held-out images per class."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts = {size: ImageFont.load_default(size=size) for size in range(12, 23)}
    images, labels = [], []
    for label, letter in enumerate(GLYPHS):
        for _ in range(per_class + 200):
            # light on dark or dark on light, in random tints: the letter always stands out
            dark = rng.integers(0, 90, 3)
            light = rng.integers(165, 256, 3)
            background, foreground = (dark, light) if rng.random() < 0.5 else (light, dark)
            background = tuple(int(v) for v in background)
            foreground = tuple(int(v) for v in foreground)
            canvas = Image.new("RGB", (40, 40), background)
            size = int(rng.integers(12, 23))
            ImageDraw.Draw(canvas).text(
                (20 + rng.integers(-5, 6), 20 + rng.integers(-5, 6)),
                letter,
                fill=foreground,
                font=fonts[size],
                anchor="mm",
            )
            canvas = canvas.rotate(float(rng.uniform(-25, 25)), fillcolor=background)
            images.append(np.asarray(canvas.crop((6, 6, 34, 34))))
            labels.append(label)
    x, y = np.stack(images), np.asarray(labels, dtype=np.int64)
    held = np.zeros(len(y), dtype=bool)
    for label in range(len(GLYPHS)):
        held[np.flatnonzero(y == label)[per_class:]] = True
    return x[~held], y[~held], x[held], y[held]


def train_on_source(
    model: torch.nn.Module,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    recipe: TrainRecipe,
    classes: int,
) -> tuple[torch.nn.Module, float]:
    """``model`` trained by ``recipe`` on (train x, y, held x, y); returns it and its held-out
    accuracy on the source task."""
    torch.manual_seed(recipe.seed)
    train_x, train_y, held_x, held_y = data
    preprocessing = model_preprocessing(model, recipe.input_size)
    x, y = preprocessing(train_x), torch.as_tensor(train_y)
    train_steps(
        model,
        x,
        y,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        steps=max(1, round(recipe.epochs * (len(x) // recipe.batch_size))),
    )
    return model, _accuracy(model, preprocessing(held_x), torch.as_tensor(held_y), classes)


def _build(label: str, kind: str, arch: str, path: Path, recipe: TrainRecipe, make: object) -> ZooModel:
    if path.exists():
        return ZooModel(label, _ref(arch, path), kind, arch)
    start = time.perf_counter()
    model, accuracy = make()  # type: ignore[operator]
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(model, path)
    seconds = time.perf_counter() - start
    log.info("%s: source accuracy %.3f in %.0f s", label, accuracy, seconds)
    return ZooModel(label, _ref(arch, path), kind, arch, recipe.epochs, accuracy, seconds)


def build_new_populations(folder: Path) -> list[ZooModel]:
    """The ``intermediate`` and ``scratch-glyphs`` models (building what is not on disk)."""
    import timm

    config = ZooConfig()
    out = []
    fashion: list[tuple[np.ndarray, ...]] = []
    for name in OFFLINE_MODELS:
        arch = get_model_spec(name).architecture

        def make(name: str = name) -> tuple[torch.nn.Module, float]:
            if not fashion:
                fashion.append(source_data(config))
            data = fashion[0]
            return train_on_source(create_model(get_model_spec(name)), data, INTERMEDIATE, 5)  # type: ignore[arg-type]

        out.append(
            _build(
                f"{name}/intermediate",
                "intermediate",
                arch,
                folder / f"{name}_intermediate.safetensors",
                INTERMEDIATE,
                make,
            )
        )
    glyphs: list[tuple[np.ndarray, ...]] = []
    for arch in SCRATCH_ARCHITECTURES:

        def make_scratch(arch: str = arch) -> tuple[torch.nn.Module, float]:
            if not glyphs:
                glyphs.append(glyph_data())
            torch.manual_seed(SCRATCH.seed)
            model = timm.create_model(arch, pretrained=False)
            return train_on_source(model, glyphs[0], SCRATCH, len(GLYPHS))  # type: ignore[arg-type]

        out.append(
            _build(
                f"{arch}/glyphs",
                "scratch-glyphs",
                arch,
                folder / f"{arch}_glyphs.safetensors",
                SCRATCH,
                make_scratch,
            )
        )
    return out
