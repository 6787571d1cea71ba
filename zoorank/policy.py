"""How a job's top-line ranking combines its scores: the released default, and the rule for
a user's own choice of scores.

This is the one place where that decision lives (the CLI, the library, the API, the pages and
the workers all call :func:`job_policy` / read :data:`DEFAULT_RANKING`).

* **The released default** is data: a versioned JSON file in :mod:`zoorank.policies`, written
  by the held-out benchmark (``python -m benchmarks.heldout policy --name N --version V``) and
  never edited after release; :data:`DEFAULT_POLICY` names the one in force. Its weights are
  non-negative on oriented scores and apply to its own score set only.
* **A user's own set of scores** is combined by the mean rank (:data:`CHOSEN_RULE`): no fitted
  weights, so every chosen score counts the same, and the output says so.

Both keep the invariants of :mod:`zoorank.combine` (unanimity, one score ranks as itself,
rescaling changes nothing, a score with no information is left out and named).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

from zoorank.combine import METHODS, PoolRanking, Values, check_weights, combine, rank_pool
from zoorank.errors import InvalidInputError

# The released default ranking (a file of zoorank/policies/). Bump by releasing a new file.
DEFAULT_POLICY = "heldout-monotone-v5"
# Earlier releases, kept as released (the benchmark's comparison rows). v4 (knn alone) was
# superseded before it landed: it put random-init twins first (see benchmarks/results/heldout.md).
PREVIOUS_POLICIES = ("heldout-monotone-v4", "heldout-ridge-v3", "aggregate-v1")


@dataclass(frozen=True)
class RankingPolicy:
    """A way to rank a pool: ``method`` (see :mod:`zoorank.combine`) over ``scores`` with
    ``weights`` (``weighted_z`` only; each >= 0), plus where it came from.

    ``rule`` is the sentence a user reads; ``temperature`` how far the combined value was from
    the truth on the benchmark, in its own units (:mod:`zoorank.uncertainty`), valid only for
    the policy's whole score set."""

    name: str
    method: str
    scores: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    version: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    rule: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(
                f"method must be one of {', '.join(METHODS)}, got {self.method!r}", field="method"
            )
        if self.weights is not None:
            check_weights(self.weights, len(self.scores))

    def available(self, score_names: Sequence[str]) -> RankingPolicy:
        """The policy restricted to ``score_names`` (weights kept per score); a score missing
        for the whole pool is dropped with its weight, which keeps the combination monotone.
        The temperature was fitted for the whole policy: a subset's error scale is unknown."""
        keep = [i for i, s in enumerate(self.scores) if s in score_names]
        weights = None if self.weights is None else tuple(self.weights[i] for i in keep)
        temperature = self.temperature if len(keep) == len(self.scores) else None
        return replace(
            self, scores=tuple(self.scores[i] for i in keep), weights=weights, temperature=temperature
        )

    def values(self, values: Values, directions: Mapping[str, str]) -> dict[str, float]:
        """model -> combined value, higher = better (every score of the policy, none left out)."""
        return combine(values, directions, method=self.method, scores=self.scores, weights=self.weights)

    def rank(self, values: Values, directions: Mapping[str, str]) -> PoolRanking:
        """The pool ranked by this policy over its informative scores (:func:`rank_pool`)."""
        return rank_pool(values, directions, method=self.method, scores=self.scores, weights=self.weights)

    def describe_rule(self) -> str:
        if self.rule:
            return self.rule
        if len(self.scores) == 1:
            return f"{self.scores[0]} alone"
        if self.method == "mean_rank":
            return f"mean rank over {', '.join(self.scores)} (no fitted weights)"
        return f"weighted z over {', '.join(self.scores)}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scores"] = list(self.scores)
        out["weights"] = None if self.weights is None else list(self.weights)
        out["rule"] = self.describe_rule()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankingPolicy:
        weights = data.get("weights")
        return cls(
            name=str(data["name"]),
            method=str(data["method"]),
            scores=tuple(data["scores"]),
            weights=None if weights is None else tuple(float(w) for w in weights),
            version=str(data.get("version", "")),
            provenance=dict(data.get("provenance", {})),
            temperature=data.get("temperature"),
            rule=str(data.get("rule", "")),
        )


@cache
def released(name: str) -> dict[str, Any]:
    """The released policy file ``zoorank/policies/NAME.json``, as stored."""
    path = resources.files("zoorank.policies") / f"{name}.json"
    if not path.is_file():
        raise InvalidInputError(f"no released ranking policy {name!r}", field="policy")
    return dict(json.loads(path.read_text()))


def load_policy(name: str) -> RankingPolicy:
    """A released policy that a job may use (its weights are refused unless >= 0)."""
    return RankingPolicy.from_dict(released(name))


DEFAULT_RANKING = load_policy(DEFAULT_POLICY)

CHOSEN_RULE = "mean-rank-of-chosen"


def chosen_policy(score_names: Sequence[str]) -> RankingPolicy:
    """The rule for scores a user chose: the mean rank over them, no fitted weights."""
    return RankingPolicy(
        CHOSEN_RULE,
        "mean_rank",
        tuple(dict.fromkeys(score_names)),
        rule=f"mean rank over the chosen scores ({', '.join(dict.fromkeys(score_names))}); no fitted weights",
    )


def job_policy(score_names: Sequence[str]) -> RankingPolicy:
    """How a job that computed ``score_names`` is ranked: the released default when they are
    exactly its score set (what a job that names no scores computes), else the mean rank over
    them (:func:`chosen_policy`). Fitted weights never apply to a set they were not fitted on."""
    if set(score_names) == set(DEFAULT_RANKING.scores):
        return DEFAULT_RANKING
    return chosen_policy(score_names)


def describe(policy: RankingPolicy = DEFAULT_RANKING) -> str:
    """One sentence for users: what the default ranking is and how well it held out."""
    how = policy.describe_rule()
    figure = policy.provenance.get("heldout_weighted_tau")
    if figure is None:
        return f"default ranking {policy.name}: {how} (chosen in-sample; no held-out figure)"
    lo, hi = policy.provenance.get("heldout_ci95", (None, None))
    commit = str(policy.provenance.get("benchmark_commit", "?"))[:12]
    where = policy.provenance.get("heldout_over", f"{policy.provenance.get('targets')} benchmark targets")
    return (
        f"default ranking {policy.name}: {how}; held-out weighted tau {figure:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        f" over {where} (commit {commit})"
    )


def score_catalogue() -> list[dict[str, Any]]:
    """Every registered score with its metadata, whether the default ranking uses it, and its
    held-out weighted τ on the benchmark (None where it was not benchmarked)."""
    from zoorank.scores import get_score, list_scores

    heldout = DEFAULT_RANKING.provenance.get("single_scores_heldout", {})
    return [
        {
            "name": spec.name,
            "family": spec.family,
            "direction": spec.direction,
            "cost": spec.cost,
            "needs": sorted(spec.needs),
            "paper": spec.paper,
            "params": dict(spec.params),
            "description": spec.description,
            "in_default_ranking": spec.name in DEFAULT_RANKING.scores,
            "heldout_weighted_tau": heldout.get(spec.name),
        }
        for spec in (get_score(n) for n in list_scores())
    ]
