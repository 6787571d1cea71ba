"""Choosing a default ranking out of sample: held-out targets *and* held-out model populations.

A *procedure* turns training data (targets, and the models it may see on them) into a
:class:`zoorank.policy.RankingPolicy`: a fixed single score, "the k scores with the best mean
weighted τ on the training data, by mean rank (or mean z-score)", "the single best score", a
non-negative ridge stacker. Every candidate is monotone: weights >= 0 on oriented scores, and a
score that points the wrong way on the training data is left out, never subtracted.

Two held-out figures per procedure:

* leave-one-target-out (LOTO): fitted on every other target (all models), judged on the
  held-out target over all its models;
* target x population: fitted on the other targets *and* the other populations' models only,
  judged on the held-out target over the held-out population's models. The gap between the
  two shows how much a procedure learned its population.

:func:`choose` picks, by the target x population figure, the procedure with the fewest scores
among those within noise of the best (parsimony: fewer scores computed), among those that rank
every pretrained model above its random-init twin on the training targets;
:func:`nested_heldout` redoes that choice without each held-out target, so its mean is what the
whole selection achieves on a target it never saw.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.optimize import nnls

from zoorank.combine import Values, oriented_matrix, standardise
from zoorank.groundtruth.agreement import bootstrap_interval, count_above_twin, weighted_tau
from zoorank.policy import RankingPolicy


@dataclass(eq=False)  # hashed by identity: per-target results are cached
class TargetData:
    """One benchmark target: every model's score values, its ground-truth accuracy, and each
    model's population (one population for all when not given)."""

    name: str
    values: Values  # model -> score -> value
    accuracy: Mapping[str, float]  # model -> mean test accuracy over seeds
    populations: Mapping[str, str] = field(default_factory=dict)  # model -> population

    def population(self, model: str) -> str:
        return self.populations.get(model, "all")

    def models(self, exclude_population: str | None = None, only_population: str | None = None) -> list[str]:
        return sorted(
            m
            for m in self.accuracy
            if (exclude_population is None or self.population(m) != exclude_population)
            and (only_population is None or self.population(m) == only_population)
        )


@dataclass(frozen=True)
class Training:
    """What a procedure may fit on: targets, each restricted to the models outside
    ``exclude_population`` (None: every model)."""

    targets: tuple[TargetData, ...]
    exclude_population: str | None = None

    def models(self, target: TargetData) -> list[str]:
        return target.models(exclude_population=self.exclude_population)


@dataclass(frozen=True)
class SignedStack:
    """A weighted z-score whose weights may be negative: the released ``heldout-ridge-v3`` and
    the procedure that made it, kept as comparison rows. Never a job's policy (a negative
    weight breaks unanimity, :mod:`zoorank.combine`)."""

    name: str
    scores: tuple[str, ...]
    weights: tuple[float, ...]

    def values(self, values: Values, directions: Mapping[str, str]) -> dict[str, float]:
        models, matrix = oriented_matrix(values, directions, self.scores)
        if not self.scores:
            return dict.fromkeys(models, 0.0)
        z = np.column_stack([standardise(col) for col in matrix.T])
        return dict(zip(models, (z @ np.asarray(self.weights)).tolist(), strict=True))


Fit = Callable[[Training], "RankingPolicy | SignedStack"]


@dataclass(frozen=True)
class Procedure:
    name: str
    fit: Fit


def _combined_and_accuracy(
    policy: RankingPolicy | SignedStack,
    target: TargetData,
    directions: Mapping[str, str],
    models: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    combined = policy.values({m: target.values.get(m, {}) for m in models}, directions)
    return np.array([combined[m] for m in models]), np.array([target.accuracy[m] for m in models])


def policy_tau(
    policy: RankingPolicy | SignedStack,
    target: TargetData,
    directions: Mapping[str, str],
    models: Sequence[str] | None = None,
) -> float:
    """Weighted τ of ``policy``'s ranking of ``models`` (default: every model with an accuracy)
    against the target's accuracy (a model the policy cannot score ranks last; never dropped)."""
    return weighted_tau(*_combined_and_accuracy(policy, target, directions, models or target.models()))


def policy_tau_interval(
    policy: RankingPolicy | SignedStack,
    target: TargetData,
    directions: Mapping[str, str],
    *,
    resamples: int = 1000,
) -> tuple[float, float] | None:
    """95 % percentile bootstrap interval of :func:`policy_tau` over the target's models."""
    return bootstrap_interval(
        weighted_tau,
        *_combined_and_accuracy(policy, target, directions, target.models()),
        resamples=resamples,
    )


def heldout_values(
    procedure: Procedure, targets: Sequence[TargetData], directions: Mapping[str, str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per target: the combined values of the policy fitted on the other targets, and the
    target's accuracies (models in one order)."""
    out = []
    for i, target in enumerate(targets):
        rest = Training(tuple(t for j, t in enumerate(targets) if j != i))
        out.append(_combined_and_accuracy(procedure.fit(rest), target, directions, target.models()))
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


@lru_cache(maxsize=200_000)
def _single_tau(target: TargetData, models: tuple[str, ...], score: str, direction: str) -> float:
    single_policy = RankingPolicy(score, "weighted_z", (score,), (1.0,))
    return policy_tau(single_policy, target, {score: direction}, models)


def _score_taus(training: Training, scores: Sequence[str], directions: Mapping[str, str]) -> dict[str, float]:
    """score -> mean weighted τ over the training targets and models (NaN counted as 0)."""
    out = {}
    for score in scores:
        taus = [_single_tau(t, tuple(training.models(t)), score, directions[score]) for t in training.targets]
        out[score] = statistics.fmean(0.0 if math.isnan(x) else x for x in taus)
    return out


def single(score: str) -> Procedure:
    policy = RankingPolicy(f"single:{score}", "weighted_z", (score,), (1.0,))
    return Procedure(policy.name, lambda _training: policy)


def fixed(policy: RankingPolicy | SignedStack) -> Procedure:
    return Procedure(policy.name, lambda _training: policy)


def best_single(scores: Sequence[str], directions: Mapping[str, str]) -> Procedure:
    def fit(training: Training) -> RankingPolicy:
        taus = _score_taus(training, scores, directions)
        best = max(scores, key=lambda s: (taus[s], s))
        return RankingPolicy("best-single", "weighted_z", (best,), (1.0,))

    return Procedure("best-single", fit)


def top_k(k: int, method: str, scores: Sequence[str], directions: Mapping[str, str]) -> Procedure:
    """The ``k`` scores with the best mean training τ, among those whose τ is positive (a score
    that points the wrong way is left out), by mean rank or equal-weight z."""
    name = f"top{k}-{'mean-rank' if method == 'mean_rank' else 'mean-z'}"

    def fit(training: Training) -> RankingPolicy:
        taus = _score_taus(training, scores, directions)
        positive = [s for s in scores if taus[s] > 0] or [max(scores, key=lambda s: (taus[s], s))]
        chosen = tuple(sorted(positive, key=lambda s: (-taus[s], s))[:k])
        weights = None if method == "mean_rank" else tuple(1.0 / len(chosen) for _ in chosen)
        return RankingPolicy(name, method, chosen, weights)

    return Procedure(name, fit)


def _stacking_data(
    training: Training, scores: Sequence[str], directions: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for target in training.targets:
        models = training.models(target)
        _, matrix = oriented_matrix({m: target.values.get(m, {}) for m in models}, directions, scores)
        xs.append(np.column_stack([standardise(col) for col in matrix.T]))
        ys.append(standardise(np.array([target.accuracy[m] for m in models])))
    return np.vstack(xs), np.concatenate(ys)


def nonnegative_stack(scores: Sequence[str], directions: Mapping[str, str], alpha: float = 10.0) -> Procedure:
    """Non-negative ridge regression (no intercept) of each training target's standardised
    accuracy on its standardised oriented scores: ``min ||Xw − y||² + α||w||²`` s.t. ``w >= 0``
    (NNLS on the augmented system). Scores with a zero weight are dropped: not computed."""
    name = f"nonneg-stack(alpha={alpha:g})"

    def fit(training: Training) -> RankingPolicy:
        x, y = _stacking_data(training, scores, directions)
        augmented = np.vstack([x, math.sqrt(alpha) * np.eye(x.shape[1])])
        weights, _ = nnls(augmented, np.concatenate([y, np.zeros(x.shape[1])]))
        keep = [i for i, w in enumerate(weights) if w > 1e-9]
        if not keep:
            keep = [int(np.argmax(x.T @ y))]
            weights[keep[0]] = 1.0
        total = float(sum(weights[i] for i in keep))
        return RankingPolicy(
            name,
            "weighted_z",
            tuple(scores[i] for i in keep),
            tuple(round(float(weights[i]) / total, 6) for i in keep),
        )

    return Procedure(name, fit)


def signed_ridge_stack(
    scores: Sequence[str], directions: Mapping[str, str], alpha: float = 10.0
) -> Procedure:
    """The procedure of the previous default ``heldout-ridge-v3``: ridge weights of either sign
    (comparison row only)."""
    name = f"signed-ridge-stack(alpha={alpha:g})"

    def fit(training: Training) -> SignedStack:
        x, y = _stacking_data(training, scores, directions)
        weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)
        return SignedStack(name, tuple(scores), tuple(float(w) for w in weights))

    return Procedure(name, fit)


# -- judging ------------------------------------------------------------------------------


def populations(targets: Iterable[TargetData]) -> list[str]:
    return sorted({t.population(m) for t in targets for m in t.accuracy})


def heldout_taus(
    procedure: Procedure, targets: Sequence[TargetData], directions: Mapping[str, str]
) -> dict[str, float]:
    """target -> weighted τ (over all its models) of the policy fitted on every other target."""
    out = {}
    for i, target in enumerate(targets):
        rest = Training(tuple(t for j, t in enumerate(targets) if j != i))
        out[target.name] = policy_tau(procedure.fit(rest), target, directions)
    return out


def fold_name(target: str, population: str) -> str:
    return f"{target} x {population}"


def population_taus(
    procedure: Procedure, targets: Sequence[TargetData], directions: Mapping[str, str]
) -> dict[str, float]:
    """'target x population' -> weighted τ over the held-out population's models on the
    held-out target, of the policy fitted on the other targets and the other populations."""
    out = {}
    pops = populations(targets)
    for i, target in enumerate(targets):
        others = tuple(t for j, t in enumerate(targets) if j != i)
        for pop in pops:
            models = target.models(only_population=pop)
            if len(models) < 2:
                continue
            policy = procedure.fit(Training(others, exclude_population=pop if len(pops) > 1 else None))
            out[fold_name(target.name, pop)] = policy_tau(policy, target, directions, models)
    return out


def _mean(values: Iterable[float]) -> float:
    finite = [0.0 if math.isnan(v) else v for v in values]
    return statistics.fmean(finite) if finite else math.nan


def fold_mean_interval(
    per_fold: Mapping[str, float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of the mean over folds, resampling *targets* (a target's folds share its
    images and its ground truth, so they are not independent)."""
    by_target: dict[str, list[float]] = {}
    for name, value in per_fold.items():
        by_target.setdefault(name.split(" x ")[0], []).append(0.0 if math.isnan(value) else value)
    groups = list(by_target.values())
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(resamples):
        drawn = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        means.append(statistics.fmean(v for g in drawn for v in g))
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def paired_difference_interval(
    per_fold: Mapping[str, float], best: Mapping[str, float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of mean(``per_fold`` − ``best``) over the same folds, resampling targets."""
    return fold_mean_interval({k: per_fold[k] - best[k] for k in best}, resamples=resamples, seed=seed)


def beats_random_twins(
    policy: RankingPolicy | SignedStack,
    targets: Sequence[TargetData],
    directions: Mapping[str, str],
    twins: Mapping[str, str],
) -> bool:
    """Whether ``policy`` ranks every pretrained model above its random-init twin
    (``twins``: pretrained -> random) on every one of ``targets`` where both are present."""
    for target in targets:
        combined = policy.values({m: target.values.get(m, {}) for m in target.models()}, directions)
        counted = count_above_twin(combined, "higher", twins)  # pairs where both models are present
        if counted["above"] < counted["pairs"]:
            return False
    return True


def choose(
    procedures: Sequence[Procedure],
    targets: Sequence[TargetData],
    directions: Mapping[str, str],
    twins: Mapping[str, str] | None = None,
) -> tuple[Procedure, dict[str, dict[str, float]]]:
    """The procedure to release: among those within noise of the best mean target x population
    τ (the 95 % interval of their paired difference from the best, targets resampled, reaches
    0), the one with the fewest scores (then the better mean, then the first listed); and every
    procedure's per-fold held-out τ.

    With ``twins`` (pretrained -> its random-init twin), only procedures whose policy, fitted on
    ``targets``, ranks every pretrained model above its twin on each of them are eligible (a
    random init is the baseline every ranking should beat); when none is, all are."""
    table = {p.name: population_taus(p, targets, directions) for p in procedures}
    means = {p.name: _mean(table[p.name].values()) for p in procedures}
    if twins:
        training = Training(tuple(targets))
        eligible = [p for p in procedures if beats_random_twins(p.fit(training), targets, directions, twins)]
        procedures = eligible or list(procedures)
    best = max(procedures, key=lambda p: means[p.name])

    def zero(x: float) -> float:
        return 0.0 if math.isnan(x) else x

    clean = {name: {k: zero(v) for k, v in per.items()} for name, per in table.items()}
    within = [p for p in procedures if paired_difference_interval(clean[p.name], clean[best.name])[1] >= 0.0]
    sizes = {p.name: len(p.fit(Training(tuple(targets))).scores) for p in within}
    return min(within, key=lambda p: (sizes[p.name], -means[p.name], procedures.index(p))), table


def nested_heldout(
    procedures: Sequence[Procedure],
    targets: Sequence[TargetData],
    directions: Mapping[str, str],
    twins: Mapping[str, str] | None = None,
) -> dict[str, dict[str, object]]:
    """For each target: the procedure chosen (by :func:`choose`) on the *other* targets, the
    policy it fitted on them, its τ on the held-out target over all models, and per population
    its τ when fitted without that population too."""
    out: dict[str, dict[str, object]] = {}
    pops = populations(targets)
    for i, target in enumerate(targets):
        rest = tuple(t for j, t in enumerate(targets) if j != i)
        chosen, _ = choose(procedures, rest, directions, twins)
        policy = chosen.fit(Training(rest))
        by_population = {}
        for pop in pops:
            models = target.models(only_population=pop)
            if len(models) >= 2:
                fitted = chosen.fit(Training(rest, exclude_population=pop if len(pops) > 1 else None))
                by_population[pop] = policy_tau(fitted, target, directions, models)
        out[target.name] = {
            "procedure": chosen.name,
            "scores": list(policy.scores),
            "policy": policy,
            "weighted_tau": policy_tau(policy, target, directions),
            "by_population": by_population,
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
