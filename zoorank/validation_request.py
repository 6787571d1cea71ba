"""The defaults and limits of a ground-truth (validation) request, in one place for the
library (:func:`zoorank.groundtruth.validate`), the CLI (``zoorank validate``) and the API
(``POST /v1/validations``). Kept free of heavy imports: the CLI reads it at start-up.

The default is the cheap linear ground truth (a logistic regression on frozen pre-logits) with
one seed; ask for ``finetune`` (every weight) and several seeds for ground truth to trust.
"""

from __future__ import annotations

DEFAULT_MODE = "linear"
DEFAULT_LOSS = "ce"
DEFAULT_ALPHA = 0.25
DEFAULT_SEEDS: tuple[int, ...] = (0,)
MAX_SEEDS = 10
