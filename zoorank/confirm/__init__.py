"""The confirmation stage: fine-tune the top-k of a ranking briefly and keep the best.

Successive halving over epochs of fine-tuning (Jamieson & Talwalkar, AISTATS 2016; the inner
loop of Hyperband, Li et al., JMLR 2018) on the shortlist a ranking gives, judged by the regret
of its pick (Renggli et al., "Which model to transfer?", CVPR 2022, arXiv 2010.06402).
Pure numpy: :mod:`zoorank.confirm.halving`.
"""

from zoorank.confirm.halving import (
    HalvingRecord,
    HalvingResult,
    accuracy_interval,
    clamp_top_k,
    estimated_cost,
    minimum_budget,
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
    "rungs",
    "successive_halving",
]
