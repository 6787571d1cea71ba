"""NCE: negative conditional entropy of the target labels given the source model's labels.

Tran, Nguyen, Hassner. "Transferability and Hardness of Supervised Classification Tasks",
ICCV 2019, eq. (2)-(3).

With ``zᵢ = argmax_z logits(xᵢ)`` the source model's hard label and the empirical joint
``P̂(y, z) = #{i: yᵢ = y, zᵢ = z} / n``:

    NCE = −H(Y | Z) = Σ_{y,z} P̂(y, z) log P̂(y | z),    P̂(y | z) = P̂(y, z) / P̂(z)

It is ≤ 0; 0 means every source label determines the target label.
"""

from __future__ import annotations

import numpy as np

from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score


def negative_conditional_entropy(source_labels_n: np.ndarray, target_labels_n: np.ndarray) -> float:
    """−H(Y|Z) of target labels ``Y (n,)`` given source labels ``Z (n,)``, in nats.

    Args:
        source_labels_n: ``(n,)`` hard source-class labels (any values).
        target_labels_n: ``(n,)`` target labels (any values).

    Raises:
        InvalidInputError: shapes differ, fewer than 2 target classes.

    Example:
        >>> z = np.array([0, 0, 1, 1]); y = np.array([0, 1, 1, 1])
        >>> round(negative_conditional_entropy(z, y), 4)  # ½ · (−log 2)
        -0.3466
    """
    target = check_labels(target_labels_n)
    source = np.asarray(source_labels_n)
    if source.shape != target.shape:
        raise InvalidInputError(
            f"source labels have shape {source.shape} but target labels {target.shape}",
            field="logits",
        )
    _, source = np.unique(source, return_inverse=True)
    classes = int(target.max()) + 1
    counts = np.bincount(source * classes + target).astype(np.float64)
    joint = counts[counts > 0]
    marginal = np.bincount(source).astype(np.float64)[np.nonzero(counts)[0] // classes]
    n = float(target.shape[0])
    return float(np.sum(joint / n * np.log(joint / marginal)))


def _compute(inputs: ScoreInputs) -> ScoreOutput:
    assert inputs.logits is not None
    labels = check_labels(inputs.labels)
    logits = check_matrix(inputs.logits, labels.shape[0], name="logits")
    source = logits.argmax(axis=1)
    return ScoreOutput(
        value=negative_conditional_entropy(source, labels),
        details={"source_classes_used": int(np.unique(source).size)},
    )


register_score(
    ScoreSpec(
        name="nce",
        family="baseline",
        compute=_compute,
        needs=frozenset({"logits"}),
        direction="higher",
        paper="Tran et al. 2019, Transferability and Hardness of Supervised Classification Tasks (ICCV)",
        cost="cheap",
        description="−H(Y|Z) with Z the argmax of the source logits, from the empirical joint.",
    )
)
