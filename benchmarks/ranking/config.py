"""Every size of the ranking benchmark in one place, with defaults that rebuild the whole
benchmark (zoo, scores, ground truth, PowerGrad study) in about half an hour on a 2-core CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from zoorank.groundtruth import TrainSettings

OFFLINE_MODELS = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "mobilenetv2_100",
)


@dataclass
class ZooConfig:
    """The controlled zoo: each architecture trained once on the source task from a seeded
    random init, with a snapshot saved after each of ``snapshot_epochs`` (fractions allowed:
    0.25 is a quarter of an epoch), so models differ in architecture and in training length.

    Source task: the Fashion-MNIST *train* split (the target ``builtin:fashion-mnist`` is the
    disjoint test split), restricted to ``source_classes`` -- the fashion target then has
    classes the zoo never saw, and digits is a different domain altogether.
    """

    architectures: tuple[str, ...] = (
        "resnet10t",
        "mobilenetv3_small_050",
        "regnetx_002",
        "ghostnet_050",
    )
    snapshot_epochs: tuple[float, ...] = (0.25, 1.0, 5.0)
    source_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    source_per_class: int = 600
    input_size: int = 32
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    # A pretrained ImageNet model whose top stages (blocks[reinit_from:], head) are re-drawn.
    reinit_model: str = "tf_efficientnet_lite0"
    reinit_from: int = 4

    def key(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchConfig:
    """The benchmark: zoo, targets, ground-truth settings, scores, PowerGrad study."""

    targets: tuple[str, ...] = ("builtin:digits", "builtin:fashion-mnist")
    zoo: ZooConfig = field(default_factory=ZooConfig)
    offline_models: tuple[str, ...] = OFFLINE_MODELS
    random_twins: bool = True
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            train_per_class=30,
            val_per_class=20,
            test_per_class=100,
            input_size=32,
            epochs=5,
            patience=2,
            batch_size=32,
            lr=1e-3,
            weight_decay=0.05,
            device="cpu",
        )
    )
    # None: every registered score. Input-space scores take a forward/backward pass per step;
    # their sample counts are cut to fit the budget (recorded in the results).
    scores: tuple[str, ...] | None = None
    score_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "constrained_margin": {"samples": 32},
            "fragmentation": {"pairs": 16},
        }
    )
    tap_images_per_class: int = 5
    resamples: int = 1000
    powergrad_alphas: tuple[float, ...] = (1.0, 0.5, 0.25)
    # Models of the PowerGrad study (labels, see run.py); None: every model.
    powergrad_models: tuple[str, ...] | None = (
        "tf_efficientnet_lite0",
        "mobilenetv2_100",
        "tf_efficientnet_lite0@random",
        "mobilenetv2_100@random",
        "resnet10t/e5",
        "mobilenetv3_small_050/e5",
    )
    threads: int = 1  # torch threads; 2 is faster only on an otherwise idle 2-core machine
    # BLAS threads (numpy/scipy/sklearn). 1: on a shared CPU, OpenBLAS threads that outnumber
    # the free cores spin-wait; measured here, the probe-based scores ran ~100x slower.
    blas_threads: int = 1
    cache_dir: Path = Path("benchmarks/cache")
    out_dir: Path = Path("benchmarks/results")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cache_dir"], out["out_dir"] = str(self.cache_dir), str(self.out_dir)
        return out


def quick_config(base: BenchConfig) -> BenchConfig:
    """A smoke-test size (a few minutes): checks the harness end to end, not the science."""
    zoo = replace(
        base.zoo,
        architectures=("mobilenetv3_small_050", "regnetx_002"),
        snapshot_epochs=(0.25, 2.0),
        source_per_class=200,
    )
    train = replace(base.train, train_per_class=10, val_per_class=5, test_per_class=30, epochs=2)
    return replace(
        base,
        targets=base.targets[:1],
        zoo=zoo,
        offline_models=("mobilenetv2_100",),
        seeds=(0, 1),
        train=train,
        resamples=200,
        powergrad_models=("mobilenetv2_100", "regnetx_002/e2"),
        out_dir=base.cache_dir / "quick",
    )
