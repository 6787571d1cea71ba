"""Ground truth (linear probe / fine-tuning, optionally with the PowerGrad loss) and how well
each score's ranking agreed with it (weighted Kendall τ, Kendall τ, Pearson r, top-1 regret).

Entry point: :func:`validate` (``zoorank validate``, ``POST /v1/validations``).
"""

from zoorank.groundtruth.agreement import Agreement, score_agreement, seed_agreement
from zoorank.groundtruth.powergrad import LOSSES, PowerGradCrossEntropy, powergrad_cross_entropy
from zoorank.groundtruth.training import MODES, TrainSettings, split_rows
from zoorank.groundtruth.validation import (
    GroundTruth,
    ValidationResult,
    compare_with_ground_truth,
    validate,
)

__all__ = [
    "LOSSES",
    "MODES",
    "Agreement",
    "GroundTruth",
    "PowerGradCrossEntropy",
    "TrainSettings",
    "ValidationResult",
    "compare_with_ground_truth",
    "powergrad_cross_entropy",
    "score_agreement",
    "seed_agreement",
    "split_rows",
    "validate",
]
