"""Choosing a default ranking out of sample (leave-one-target-out).

A *procedure* turns training targets into a :class:`zoorank.policy.RankingPolicy`: a fixed
single score, "the k scores with the best mean weighted τ on the training targets, by mean rank
(or mean z-score)", "the single best score on the training targets", a ridge stacker fitted on
the training targets. Its held-out figure on target ``t`` is the weighted τ, on ``t``, of the
policy it produced from the other targets.

Choosing the best procedure by those figures is itself a selection made on the same targets;
:func:`nested_heldout` redoes the choice without each held-out target (inner leave-one-out on
the rest), so its mean is what the whole selection achieves on a target it never saw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from zoorank.combine import Values, oriented_matrix, standardise
from zoorank.policy import RankingPolicy
from zoorank.validate.agreement import bootstrap_interval, weighted_tau


@dataclass
class TargetData:
    """One benchmark target: every model's score values and its ground-truth accuracy."""

    name: str
    values: Values  # model -> score -> value
    accuracy: Mapping[str, float]  # model -> mean test accuracy over seeds


Fit = Callable[[Sequence[TargetData]], RankingPolicy]


@dataclass(frozen=True)
class Procedure:
    name: str
    fit: Fit


def _combined_and_accuracy(
    policy: RankingPolicy, target: TargetData, directions: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    models = sorted(target.accuracy)
    combined = policy.values({m: target.values.get(m, {}) for m in models}, directions)
    return np.array([combined[m] for m in models]), np.array([target.accuracy[m] for m in models])


def policy_tau(policy: RankingPolicy, target: TargetData, directions: Mapping[str, str]) -> float:
    """Weighted τ of ``policy``'s ranking against the target's accuracy, over every model with
    an accuracy (a model the policy cannot score ranks last; it is never dropped)."""
    return weighted_tau(*_combined_and_accuracy(policy, target, directions))


def policy_tau_interval(
    policy: RankingPolicy, target: TargetData, directions: Mapping[str, str], *, resamples: int = 1000
) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of :func:`policy_tau` over the target's models."""
    return bootstrap_interval(
        weighted_tau, *_combined_and_accuracy(policy, target, directions), resamples=resamples
    )


def heldout_values(
    procedure: Procedure, targets: Sequence[TargetData], directions: Mapping[str, str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per target: the combined values of the policy fitted on the other targets, and the
    target's accuracies (models in one order)."""
    out = []
    for i, target in enumerate(targets):
        rest = [t for j, t in enumerate(targets) if j != i]
        out.append(_combined_and_accuracy(procedure.fit(rest), target, directions))
    return out


def plackett_luce_loglik(values_n: np.ndarray, accuracy_n: np.ndarray, temperature: float) -> float:
    """Log-likelihood of the true order (by accuracy, best first) under the Plackett-Luce
    model with scores ``values / temperature``: ``Σ_i s_(i) − log Σ_{j>=i} exp s_(j)``."""
    order = np.argsort(-np.asarray(accuracy_n), kind="stable")
    s = np.asarray(values_n, dtype=np.float64)[order] / temperature
    tail_logsumexp = np.logaddexp.accumulate(s[::-1])[::-1]
    return float(np.sum(s - tail_logsumexp))


TEMPERATURE_GRID = tuple(float(t) for t in np.geomspace(0.01, 100.0, 161))


def fit_temperature(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The temperature (on :data:`TEMPERATURE_GRID`) that makes held-out combined values most
    likely to produce the true orders: how far a ranking's values are from the truth, in their
    own units. Fitted on held-out values so that it measures out-of-sample error."""
    return max(TEMPERATURE_GRID, key=lambda t: sum(plackett_luce_loglik(v, a, t) for v, a in pairs))


def _score_taus(
    targets: Sequence[TargetData], scores: Sequence[str], directions: Mapping[str, str]
) -> dict[str, float]:
    """score -> mean weighted τ over ``targets`` (NaN counted as 0: no information)."""
    out = {}
    for score in scores:
        single = RankingPolicy(score, "weighted_z", (score,), (1.0,))
        taus = [policy_tau(single, t, directions) for t in targets]
        out[score] = statistics.fmean(0.0 if math.isnan(x) else x for x in taus)
    return out


def single(score: str) -> Procedure:
    policy = RankingPolicy(f"single:{score}", "weighted_z", (score,), (1.0,))
    return Procedure(policy.name, lambda _targets: policy)


def fixed(policy: RankingPolicy) -> Procedure:
    return Procedure(policy.name, lambda _targets: policy)


def best_single(scores: Sequence[str], directions: Mapping[str, str]) -> Procedure:
    def fit(targets: Sequence[TargetData]) -> RankingPolicy:
        taus = _score_taus(targets, scores, directions)
        best = max(scores, key=lambda s: (taus[s], s))
        return RankingPolicy("best-single", "weighted_z", (best,), (1.0,))

    return Procedure("best-single", fit)


def top_k(k: int, method: str, scores: Sequence[str], directions: Mapping[str, str]) -> Procedure:
    name = f"top{k}-{'mean-rank' if method == 'mean_rank' else 'mean-z'}"

    def fit(targets: Sequence[TargetData]) -> RankingPolicy:
        taus = _score_taus(targets, scores, directions)
        chosen = tuple(sorted(scores, key=lambda s: (-taus[s], s))[:k])
        weights = None if method == "mean_rank" else tuple(1.0 / k for _ in chosen)
        return RankingPolicy(name, method, chosen, weights)

    return Procedure(name, fit)


def ridge_stack(scores: Sequence[str], directions: Mapping[str, str], alpha: float = 10.0) -> Procedure:
    """Weights of a ridge regression (no intercept) of each target's standardised accuracy on
    its standardised oriented scores, pooled over the training targets."""
    name = f"ridge-stack(alpha={alpha:g})"

    def fit(targets: Sequence[TargetData]) -> RankingPolicy:
        xs, ys = [], []
        for target in targets:
            models = sorted(target.accuracy)
            _, matrix = oriented_matrix({m: target.values.get(m, {}) for m in models}, directions, scores)
            xs.append(np.column_stack([standardise(col) for col in matrix.T]))
            ys.append(standardise(np.array([target.accuracy[m] for m in models])))
        x, y = np.vstack(xs), np.concatenate(ys)
        weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)
        return RankingPolicy(name, "weighted_z", tuple(scores), tuple(float(w) for w in weights))

    return Procedure(name, fit)


def heldout_taus(
    procedure: Procedure, targets: Sequence[TargetData], directions: Mapping[str, str]
) -> dict[str, float]:
    """target -> weighted τ of the policy fitted on every other target."""
    out = {}
    for i, target in enumerate(targets):
        rest = [t for j, t in enumerate(targets) if j != i]
        out[target.name] = policy_tau(procedure.fit(rest), target, directions)
    return out


def _mean(values: Sequence[float]) -> float:
    finite = [0.0 if math.isnan(v) else v for v in values]
    return statistics.fmean(finite) if finite else math.nan


def choose(
    procedures: Sequence[Procedure], targets: Sequence[TargetData], directions: Mapping[str, str]
) -> tuple[Procedure, dict[str, dict[str, float]]]:
    """The procedure with the best mean leave-one-target-out τ over ``targets`` (ties: the
    first listed), and every procedure's per-target held-out τ."""
    table = {p.name: heldout_taus(p, targets, directions) for p in procedures}
    best = max(procedures, key=lambda p: _mean(list(table[p.name].values())))
    return best, table


def nested_heldout(
    procedures: Sequence[Procedure], targets: Sequence[TargetData], directions: Mapping[str, str]
) -> dict[str, dict[str, object]]:
    """For each target: the procedure chosen (by :func:`choose`) on the *other* targets, the
    policy it fitted on them, and that policy's τ on the held-out target."""
    out: dict[str, dict[str, object]] = {}
    for i, target in enumerate(targets):
        rest = [t for j, t in enumerate(targets) if j != i]
        chosen, _ = choose(procedures, rest, directions)
        policy = chosen.fit(rest)
        out[target.name] = {
            "procedure": chosen.name,
            "scores": list(policy.scores),
            "policy": policy,
            "weighted_tau": policy_tau(policy, target, directions),
        }
    return out


def bootstrap_mean_interval(
    values: Sequence[float], *, resamples: int = 10000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over targets (targets resampled)."""
    array = np.asarray([0.0 if math.isnan(v) else v for v in values])
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, array.size, size=(resamples, array.size))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
