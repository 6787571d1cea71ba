"""NCTI: how far the features are from neural collapse on the target data.

Wang, Luo, Zheng, Huang, Baktashmotlagh. "How Far Pre-trained Models Are from Neural
Collapse on the Target Dataset Informs their Transferability", ICCV 2023; as the authors'
code (BUserName/NCTI ``metrics.py``, ``NCTI_Score``, and the pool step of
``evaluate_metric_group1_cpu.py``).

The features are reduced by PCA to ``dims`` (64) components ``Z``. A linear discriminant
analysis is fitted on ``Z``: with ``s = max(exp(−Σ_{j≤32} var_j), 1e-10)`` (the variance of
the leading 32 components), an eigen-solver LDA with shrinkage ``s``, or — when ``s`` hits
the 1e-10 floor — the SVD solver without shrinkage (scikit-learn's
``LinearDiscriminantAnalysis``, as the authors). Three raw terms:

* ``seli`` (simplex encoded labels interpolation): ``||H||_*``, the nuclear norm of the
  centred LDA projection ``H (n, min(C−1, dims))``. Higher is better.
* ``ncc`` (nearest class centre): ``(1/n) Σᵢ p(yᵢ | zᵢ)`` of the LDA classifier. Higher is better.
* ``vc`` (variability collapse): ``log Σ_c ||P_c||_*``, ``P_c`` the LDA probabilities of the
  samples of class ``c``. Lower is better.

NCTI itself is pool-relative: over the models of one job each term is min-max normalised
and ``NCTI = ncc' + seli' − vc'`` (:func:`normalise_over_pool`, the registry's
``pool_normalise``). A term on which every model of the pool ties normalises to 0 (the
authors' code would divide by zero). The raw ``value`` stored for a single model is
``ncc + seli − vc`` without normalisation; rank pools by the normalised value.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import principal_components
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.registry import ScoreSpec, register_score

_TERMS = ("seli", "ncc", "vc")


def neural_collapse_terms(
    features_nd: np.ndarray, labels_n: np.ndarray, *, dims: int = 64
) -> dict[str, float]:
    """The three raw NCTI terms ``{"seli", "ncc", "vc", "shrinkage"}`` of features ``(n, d)``.

    ``shrinkage`` is 0.0 when the SVD solver (no shrinkage) was used.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.
        dims: PCA components (capped at ``min(n, d)``); the authors use 64.

    Raises:
        InvalidInputError: non-finite or constant features, shape mismatch, < 2 classes,
            ``dims < 1``.

    Example:
        >>> rng = np.random.default_rng(0); y = np.repeat(np.arange(3), 20)
        >>> tight = np.eye(3)[y] * 10 + rng.normal(size=(60, 3))
        >>> loose = np.eye(3)[y] + rng.normal(size=(60, 3))
        >>> neural_collapse_terms(tight, y)["ncc"] > neural_collapse_terms(loose, y)["ncc"]
        True
    """
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    if dims < 1:
        raise InvalidInputError(f"dims must be at least 1, got {dims}", field="params")
    pca = principal_components(x, components=dims)
    shrinkage = max(float(np.exp(-pca.variance[:32].sum())), 1e-10)
    if shrinkage == 1e-10:
        lda = LinearDiscriminantAnalysis(solver="svd")
    else:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Variables are collinear"
        projected = lda.fit_transform(pca.scores, labels)
        probabilities = lda.predict_proba(pca.scores)
    projected = projected - projected.mean(axis=0)
    ncc = float(np.mean(probabilities[np.arange(labels.shape[0]), labels]))
    per_class = sum(
        float(np.linalg.norm(probabilities[labels == c], ord="nuc")) for c in range(int(labels.max()) + 1)
    )
    return {
        "seli": float(np.linalg.norm(projected, ord="nuc")),
        "ncc": ncc,
        "vc": float(np.log(per_class)),
        "shrinkage": 0.0 if shrinkage == 1e-10 else shrinkage,
    }


def normalise_over_pool(outputs: Sequence[ScoreOutput]) -> list[float]:
    """NCTI of each model of a pool: ``ncc' + seli' − vc'``, each term min-max normalised.

    Args:
        outputs: the raw :class:`ScoreOutput` of every model of one job (``details`` holding
            ``seli``, ``ncc`` and ``vc``).

    Raises:
        InvalidInputError: an output without the three terms.

    Example:
        >>> a = ScoreOutput(0.0, {"seli": 10.0, "ncc": 0.9, "vc": 2.0})
        >>> b = ScoreOutput(0.0, {"seli": 5.0, "ncc": 0.5, "vc": 1.0})
        >>> normalise_over_pool([a, b])
        [1.0, 0.0]
    """
    if not outputs:
        return []
    try:
        table = np.array([[float(out.details[t]) for t in _TERMS] for out in outputs])
    except KeyError as missing:
        raise InvalidInputError(
            f"NCTI pool normalisation needs the raw terms {', '.join(_TERMS)}; {missing} is "
            "missing from a result",
            field="scores",
        ) from None
    low, span = table.min(axis=0), np.ptp(table, axis=0)
    normalised = np.divide(table - low, span, out=np.zeros_like(table), where=span > 0)
    seli, ncc, vc = normalised.T
    return [float(v) for v in ncc + seli - vc]


def _compute(inputs: ScoreInputs, *, dims: int) -> ScoreOutput:
    assert inputs.features is not None
    terms = neural_collapse_terms(inputs.features, inputs.labels, dims=dims)
    return ScoreOutput(value=terms["ncc"] + terms["seli"] - terms["vc"], details=terms)


register_score(
    ScoreSpec(
        name="ncti",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Wang et al. 2023, How Far Pre-trained Models Are from Neural Collapse on the "
        "Target Dataset Informs their Transferability (ICCV)",
        cost="cheap",
        params={"dims": 64},
        description="Neural-collapse terms (seli, ncc, vc); normalised across the job's models.",
        pool_normalise=normalise_over_pool,
    )
)
