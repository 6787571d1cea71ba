"""The confirmation stage: fine-tune the top-k of a ranking briefly and keep the best.

Successive halving over epochs of fine-tuning (Jamieson & Talwalkar, AISTATS 2016; the inner
loop of Hyperband, Li et al., JMLR 2018) on the shortlist a ranking gives, judged by the regret
of its pick (Renggli et al., "Which model to transfer?", CVPR 2022, arXiv 2010.06402).
Pure numpy: :mod:`zoorank.confirm.halving`. The request (:mod:`~zoorank.confirm.request`), the
plan before training (:mod:`~zoorank.confirm.plan`), one (model, rung) of training
(:mod:`~zoorank.confirm.units`), and the run and its answer (:mod:`~zoorank.confirm.stage`), which
the CLI runs in-process and the service one unit per task.
"""

from zoorank.confirm.halving import (
    HalvingRecord,
    HalvingResult,
    accuracy_interval,
    clamp_top_k,
    estimated_cost,
    minimum_budget,
    paired_difference,
    rungs,
    successive_halving,
)

__all__ = [
    "HalvingRecord",
    "HalvingResult",
    "accuracy_interval",
    "clamp_top_k",
    "estimated_cost",
    "minimum_budget",
    "paired_difference",
    "rungs",
    "successive_halving",
]
