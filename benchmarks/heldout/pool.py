"""The 33 models of the held-out benchmark, of graded transferability:

* the 4 offline ImageNet models (``tf_efficientnet_lite0/1/2``, ``mobilenetv2_100``) and their
  4 random-init twins;
* 5 pretrained models with their top k stages re-drawn (``tf_efficientnet_lite0`` from stage 5
  and 3, ``mobilenetv2_100`` from stage 5, 3 and 1): the more re-drawn, the less transfers;
* the controlled zoo of ``benchmarks/ranking`` (4 architectures trained here on a Fashion-MNIST
  source task, snapshots after 0.25, 1 and 5 epochs): 12 models;
* two populations like those users bring (:mod:`benchmarks.heldout.populations`): the ImageNet
  models after a short intermediate task (4), four other architectures trained here on
  generated glyphs (4).

33 models, ten architectures; each model belongs to one population
(:func:`benchmarks.heldout.populations.population`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from zoorank.zoo import get_model_spec

from ..ranking.config import OFFLINE_MODELS, ZooConfig
from ..ranking.zoo import ZooModel, _ref, _save, build_zoo, redraw_top
from .populations import build_new_populations, population

log = logging.getLogger(__name__)

# (model, first re-drawn stage): blocks[stage:], the head convolution, its norm and the
# classifier get a seeded random init.
REINIT: tuple[tuple[str, int], ...] = (
    ("tf_efficientnet_lite0", 5),
    ("tf_efficientnet_lite0", 3),
    ("mobilenetv2_100", 5),
    ("mobilenetv2_100", 3),
    ("mobilenetv2_100", 1),
)


def reinit_from(name: str, stage: int, folder: Path, seed: int = 1) -> ZooModel:
    """``name`` (offline ImageNet weights) with ``blocks[stage:]`` and the head re-drawn."""

    path = folder / f"{name}_from{stage}_reinit.safetensors"
    label = f"{name}/reinit-from-{stage}"
    spec = get_model_spec(name)
    if path.exists():
        return ZooModel(label, _ref(spec.architecture, path), "reinit", spec.architecture)
    start = time.perf_counter()
    model, replaced, total = redraw_top(name, stage, seed)
    folder.mkdir(parents=True, exist_ok=True)
    _save(model, path)
    log.info("reinit %s: %d of %d tensors re-drawn", label, replaced, total)
    return ZooModel(
        label, _ref(spec.architecture, path), "reinit", spec.architecture, seconds=time.perf_counter() - start
    )


def build_pool(cache_dir: Path) -> list[ZooModel]:
    """Every model of the benchmark (building what is not yet on disk)."""
    zoo = [m for m in build_zoo(ZooConfig(reinit_model=""), cache_dir / "zoo") if m.kind == "zoo"]
    models = [ZooModel(n, n, "imagenet", n) for n in OFFLINE_MODELS]
    models += [ZooModel(f"{n}@random", f"{n}@random", "random", n) for n in OFFLINE_MODELS]
    models += [reinit_from(name, stage, cache_dir / "zoo") for name, stage in REINIT]
    return models + zoo + build_new_populations(cache_dir / "zoo")


def pool_manifest(models: list[ZooModel]) -> list[dict[str, object]]:
    return [asdict(m) | {"population": population(m.kind)} for m in models]
