"""N-LEEP: LEEP with the source classifier replaced by a Gaussian mixture on the features.

Li, Jia, Zhou, Lin, Yang, Wang. "Ranking Neural Checkpoints", CVPR 2021, §3.3; as the
authors' code (google-research ``stable_transfer/transferability/nleep.py``).

The pre-logit features are reduced by PCA to the fewest components that explain
``variance`` (80%) of the variance, a full-covariance Gaussian mixture with
``components_per_class · C`` (5C) components is fitted to them, and its posterior
``θ(x)_z = p(z | x)`` takes the place of the source softmax in LEEP:

    N-LEEP = (1/n) Σᵢ log Σ_z P̂(yᵢ | z) θ(xᵢ)_z       (see :mod:`zoorank.scores.leep`)

Deviations, each to keep the score a few seconds and well defined:

* at most ``max_dims`` PCA components (64; 0 means no cap, as the authors). 80% of the
  variance of 2048-d features can need hundreds of components, and a full-covariance
  mixture of 5C components costs ``O(n · dims² · C)`` per EM step;
* at most ``n // 2`` mixture components (a mixture with as many components as samples is
  degenerate);
* the PCA scores are scaled to unit mean variance so that scikit-learn's covariance
  regulariser ``reg_covar`` means the same for every model; a fit that still collapses is
  retried with ``reg_covar`` ×100 (1e-6, 1e-4, 1e-2), the value used goes in ``details``;
* the mixture is fitted to the rows in a content-defined order, so the seeded k-means
  initialisation, and with it the score, does not depend on the order of the samples.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from zoorank.errors import InvalidInputError
from zoorank.scores._baseline_math import content_order, principal_components
from zoorank.scores.inputs import ScoreInputs, ScoreOutput, check_labels, check_matrix
from zoorank.scores.leep import log_expected_empirical_prediction
from zoorank.scores.registry import ScoreSpec, register_score

_REG_COVARS = (1e-6, 1e-4, 1e-2)


def gaussian_mixture_leep(
    features_nd: np.ndarray,
    labels_n: np.ndarray,
    *,
    variance: float = 0.8,
    max_dims: int = 64,
    components_per_class: int = 5,
    seed: int = 0,
) -> tuple[float, dict[str, float]]:
    """N-LEEP of features ``(n, d)`` for labels ``(n,)``, and the mixture's settings.

    Args:
        features_nd: ``(n, d)`` pre-logit features.
        labels_n: ``(n,)`` class labels, any values.
        variance: explained-variance ratio the PCA keeps, in ``(0, 1]``.
        max_dims: cap on the PCA components (0: none).
        components_per_class: mixture components per target class.
        seed: seed of the mixture's k-means initialisation.

    Returns:
        ``(value, details)`` with ``details = {"dims", "components", "reg_covar"}``.

    Raises:
        InvalidInputError: non-finite or constant features, shape mismatch, < 2 classes,
            parameters out of range.

    Example:
        >>> rng = np.random.default_rng(0); y = np.repeat(np.arange(2), 30)
        >>> x = 8.0 * np.eye(2)[y] + rng.normal(size=(60, 2))
        >>> value, _ = gaussian_mixture_leep(x, y)
        >>> value > -0.05  # two far-apart blobs: the mixture's posterior predicts y
        True
    """
    labels = check_labels(labels_n)
    x = check_matrix(features_nd, labels.shape[0])
    if not 0.0 < variance <= 1.0:
        raise InvalidInputError(f"variance must be in (0, 1], got {variance}", field="params")
    if max_dims < 0 or components_per_class < 1:
        raise InvalidInputError("max_dims must be ≥ 0 and components_per_class ≥ 1", field="params")
    pca = principal_components(x, variance_ratio=variance, components=max_dims or None)
    dims = pca.scores.shape[1]
    z = pca.scores / np.sqrt(pca.variance.mean())
    n = labels.shape[0]
    components = max(1, min(components_per_class * (int(labels.max()) + 1), n // 2))
    order = content_order(z)
    for reg_covar in _REG_COVARS:
        mixture = GaussianMixture(
            n_components=components, covariance_type="full", reg_covar=reg_covar, random_state=seed
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                mixture.fit(z[order])
            break
        except ValueError:  # "ill-defined empirical covariance": collapsed components
            continue
    else:
        raise InvalidInputError(
            "the Gaussian mixture collapsed even with reg_covar=1e-2; too many repeated rows",
            field="features",
        )
    posterior = mixture.predict_proba(z)
    value = log_expected_empirical_prediction(posterior, labels)
    return value, {"dims": float(dims), "components": float(components), "reg_covar": reg_covar}


def _compute(
    inputs: ScoreInputs, *, variance: float, max_dims: int, components_per_class: int
) -> ScoreOutput:
    assert inputs.features is not None
    value, details = gaussian_mixture_leep(
        inputs.features,
        inputs.labels,
        variance=variance,
        max_dims=max_dims,
        components_per_class=components_per_class,
        seed=inputs.seed,
    )
    return ScoreOutput(value=value, details=details)


register_score(
    ScoreSpec(
        name="nleep",
        family="baseline",
        compute=_compute,
        needs=frozenset({"features"}),
        direction="higher",
        paper="Li et al. 2021, Ranking Neural Checkpoints (CVPR)",
        cost="moderate",
        params={"variance": 0.8, "max_dims": 64, "components_per_class": 5},
        description="LEEP over the posterior of a Gaussian mixture fitted to PCA-reduced features.",
    )
)
