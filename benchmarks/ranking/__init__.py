"""Ranking-quality benchmark (issue 7): does each score rank models the way fine-tuning does?

A controlled zoo that a CPU can build (small timm models trained here on Fashion-MNIST for
different lengths), the offline ImageNet models with their random-init twins, and a pretrained
model with re-initialised top blocks are scored on each target and fine-tuned on it (several
seeds); every registered score's ranking is compared with the fine-tuned accuracy (weighted
Kendall τ, Kendall τ, Pearson r, top-1 regret, bootstrap intervals). The same harness runs the
PowerGrad study.

Run from the repository root::

    python -m benchmarks.ranking            # full: results/ranking.{json,md}, powergrad.{json,md}
    python -m benchmarks.ranking --quick    # smoke test, cache/quick/ (not committed)
"""

from .config import BenchConfig, ZooConfig, quick_config
from .run import run

__all__ = ["BenchConfig", "ZooConfig", "quick_config", "run"]
