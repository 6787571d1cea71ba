"""How sure is a ranking? P(ranked first) and a rank interval per model.

The job's samples are resampled: each resample keeps a stratified half of the rows of every
class, drawn without replacement (half-sampling; for a mean it has the variance of the
ordinary bootstrap, McCarthy 1969, and it never duplicates a row, which would make a
nearest-neighbour or cross-validated score see a sample as its own neighbour). On each
resample, the scores of the default ranking that read only arrays (pre-logits, logits,
metadata) are recomputed from the cached forward pass; scores that need layer taps, images or
the model keep their point value (their names are reported as ``fixed_scores``).

The resampled rows depend only on the labels, the resample count and the seed, so each model
computes its own resampled values where its features are (one Celery task per model), and the
values of resample ``r`` of every model come from the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from zoorank.combine import PoolRanking, contributions, oriented_matrix, score_ranks
from zoorank.policy import RankingPolicy
from zoorank.scores import ScoreInputs, ScoreOutput, get_score

RESAMPLED_NEEDS = frozenset({"features", "logits", "meta"})
INTERVAL_LEVEL = 0.9
BOOTSTRAP_KEY = "bootstrap"
# The resamples of one model may cost at most this share of what its forward pass and scores
# cost; a score whose resamples do not fit keeps its point value (and the job says so).
BUDGET_FRACTION = 0.2
# ... and never less than this many seconds, so that small jobs (whose forward pass takes a
# fraction of a second) still resample their cheap scores.
MIN_BUDGET_SECONDS = 2.0
# Rankings drawn in all (spread over the row resamples) when scores are reweighted or the
# policy has a temperature: only sums and sorting, cheap.
DRAWS = 2000


def resampled(score: str) -> bool:
    """Whether ``score`` is recomputed on each resample (it reads arrays only)."""
    return set(get_score(score).needs) <= RESAMPLED_NEEDS


def budgeted(
    candidates: Sequence[str],
    point_seconds: Mapping[str, float],
    model_seconds: float,
    *,
    resamples: int,
    fraction: float = BUDGET_FRACTION,
) -> list[str]:
    """The array-only ``candidates`` whose ``resamples`` fit, cheapest first, in ``fraction``
    of ``model_seconds`` (what the model's forward pass and scores took; at least
    :data:`MIN_BUDGET_SECONDS`). One resample of a score is costed at half its point
    computation (it sees half the rows).

    >>> budgeted(["leep", "linear_probe", "nce"], {"leep": 0.02, "linear_probe": 0.7, "nce": 0.01},
    ...          10.0, resamples=100)
    ['nce', 'leep']
    """
    budget = max(fraction * model_seconds, MIN_BUDGET_SECONDS)
    chosen = []
    for name in sorted((c for c in candidates if resampled(c)), key=lambda c: (point_seconds.get(c, 0.0), c)):
        cost = 0.5 * point_seconds.get(name, 0.0) * resamples
        if cost <= budget:
            chosen.append(name)
            budget -= cost
    return chosen


def half_samples(labels_n: np.ndarray, *, resamples: int, seed: int) -> list[np.ndarray]:
    """``resamples`` sorted row sets: ``ceil(n_c / 2)`` rows of each class ``c`` (at least 2
    where the class has them), without replacement."""
    labels_n = np.asarray(labels_n)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels_n == c) for c in np.unique(labels_n)]
    out = []
    for _ in range(resamples):
        parts = [
            rng.choice(rows, size=min(rows.size, max(2, -(-rows.size // 2))), replace=False)
            for rows in by_class
        ]
        out.append(np.sort(np.concatenate(parts)))
    return out


def bootstrap_values(
    inputs: ScoreInputs,
    names: Sequence[str],
    score_params: Mapping[str, Mapping[str, Any]],
    *,
    resamples: int,
    seed: int,
) -> dict[str, list[dict[str, Any]]]:
    """score -> per resample ``{"value": v | None}`` (plus ``"details"`` for scores with a
    pool step), for the array-only scores among ``names``."""
    from zoorank.rank import jsonable

    wanted = [n for n in names if resampled(n)]
    if not wanted or resamples <= 0:
        return {}
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in wanted}
    for rows in half_samples(inputs.labels, resamples=resamples, seed=seed):
        sub = ScoreInputs(
            labels=inputs.labels[rows],
            features=None if inputs.features is None else inputs.features[rows],
            logits=None if inputs.logits is None else inputs.logits[rows],
            meta=inputs.meta,
            seed=inputs.seed,
        )
        for name in wanted:
            spec = get_score(name)
            try:
                output: ScoreOutput = spec(sub, **spec.resolve_params(score_params.get(name, {})))
                value = float(output.value)
                entry: dict[str, Any] = {"value": value if np.isfinite(value) else None}
                if spec.pool_normalise is not None:
                    entry["details"] = jsonable(output.details)
            except Exception:  # a resample a score cannot handle counts as missing
                entry = {"value": None}
            out[name].append(entry)
    return out


def rank_uncertainty(
    point: Mapping[str, Mapping[str, float | None]],
    boot: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    policy: RankingPolicy,
    directions: Mapping[str, str],
    *,
    draws: int = DRAWS,
    seed: int = 0,
    level: float = INTERVAL_LEVEL,
) -> dict[str, Any]:
    """Per model P(first) and a ``level`` rank interval, and whether the top two of the point
    ranking can be told apart. Every ranking has them; the sources of variation are named in
    ``sources``:

    * ``rows`` -- the stored half-sample resamples of the policy's array-only scores (``boot``;
      a score resampled for some models only keeps its point value for all);
    * ``scores`` -- how much the ranking rests on which of its scores you trust: the used
      scores get Dirichlet(1, ..., 1) weights in each draw (a Bayesian bootstrap over scores,
      Rubin 1981), so scores that disagree on the top two make it uncertain. Used when the
      policy has two or more informative scores and no temperature;
    * ``benchmark error`` -- with the policy's ``temperature`` (fitted on the benchmark's
      held-out values, :func:`zoorank.groundtruth.selection.fit_temperature`), Gumbel noise of that
      scale on each draw's combined values: rankings drawn from the Plackett-Luce model.

    Models tied in a draw share its first place (P(top-1) is split between them). When a score
    the ranking uses puts the second model above the first, the first is never called certain:
    its share is at most ``draws / (draws + 1)`` (the rest goes to the second) and the
    sentence names the score.

    Args:
        point: model -> score -> point value (pool-normalised where the score has a pool step).
        boot: model -> score -> resamples (as :func:`bootstrap_values` returns them).
        policy: the job's policy (:func:`zoorank.policy.job_policy`).
        directions: score -> ``higher`` / ``lower``.
    """
    models = sorted(point)
    pool = policy.rank(point, directions)
    order = [str(row["model"]) for row in pool.rows]
    used = pool.used
    weights = None
    if policy.weights is not None:
        weights = [policy.weights[policy.scores.index(s)] for s in used]
    boot = {m: {s: v for s, v in boot.get(m, {}).items() if len(v) and s in used} for m in models}
    # A score resampled for some models only keeps its point value for all: a half-sample value
    # is not comparable with a full-sample one (LogME, for one, shifts with the sample size).
    rows_scores = sorted({s for m in models for s in boot[m] if all(s in boot[o] for o in models)})
    counts = {len(boot[m][s]) for m in models for s in rows_scores}
    if len(counts) > 1:
        rows_scores, counts = [], set()
    resamples = max(counts) if rows_scores else 0
    by_scores = len(used) >= 2 and policy.temperature is None
    temperature = policy.temperature
    sources = (["rows"] if resamples else []) + (["scores"] if by_scores else [])
    sources += ["benchmark error"] if temperature is not None and used else []
    per_resample = max(1, draws // max(resamples, 1)) if (by_scores or temperature is not None) else 1
    rng = np.random.default_rng(seed)
    first_share = np.zeros(len(models))
    all_ranks = []
    for r in range(max(resamples, 1)):
        values = {m: dict(point[m]) for m in models}
        for score in rows_scores:
            _resample_values(values, score, {m: boot[m][score][r] for m in models})
        _, matrix = oriented_matrix(values, directions, used)
        parts = contributions(matrix, policy.method, weights)
        for _ in range(per_resample):
            if by_scores:
                combined = parts @ (len(used) * rng.dirichlet(np.ones(len(used))))
            else:
                combined = parts.sum(axis=1)
            if temperature is not None and used:
                combined = combined + temperature * rng.gumbel(size=combined.size)
            ranks = rankdata(-combined, method="min")
            top = ranks == 1
            first_share += top / top.sum()
            all_ranks.append(ranks)
    ranks_dm = np.asarray(all_ranks)
    total = len(ranks_dm)
    tail = (1 - level) / 2
    per_model: dict[str, dict[str, Any]] = {
        m: {
            "p_top1": float(first_share[i] / total),
            "rank_interval": [
                int(np.floor(np.quantile(ranks_dm[:, i], tail))),
                int(np.ceil(np.quantile(ranks_dm[:, i], 1 - tail))),
            ],
        }
        for i, m in enumerate(models)
    }
    top_two = _top_two(pool, ranks_dm, models, point, directions, total)
    if top_two.get("capped"):
        # the dissenting scores' model keeps the share the draws were too few to show
        first, second = per_model[order[0]], per_model[order[1]]
        moved = max(0.0, float(first["p_top1"]) - total / (total + 1))
        first["p_top1"] = float(first["p_top1"]) - moved
        second["p_top1"] = float(second["p_top1"]) + moved
    return {
        "resamples": resamples,
        "draws": total,
        "temperature": temperature,
        "level": level,
        "sources": sources,
        "method": _method_text(sources, resamples, temperature, pool),
        "resampled_scores": rows_scores,
        "per_model": per_model,
        "top_two": top_two,
    }


def _method_text(sources: Sequence[str], resamples: int, temperature: float | None, pool: PoolRanking) -> str:
    parts = []
    if "rows" in sources:
        parts.append(f"{resamples} stratified half-samples of the job's rows, without replacement")
    if "scores" in sources:
        parts.append(
            "random (Dirichlet) weights over the ranking's scores, so that scores that disagree count"
        )
    if "benchmark error" in sources:
        parts.append(f"rankings drawn at the benchmark's error scale (temperature {temperature:.3g})")
    if not parts and pool.tie:
        return "no source of variation: no score could order the pool (a tie)"
    if not parts:
        return (
            "no source of variation: one score, not resampled (it needs layer taps, images or the"
            " model, or it failed on a resample)"
        )
    return "; ".join(parts)


def _resample_values(
    values: dict[str, dict[str, float | None]], score: str, entries: Mapping[str, Mapping[str, Any]]
) -> None:
    """Put one resample's values of ``score`` into ``values`` (pool-normalised if it has a pool
    step); a model whose resample failed has the score missing."""
    spec = get_score(score)
    ok = {m: e for m, e in entries.items() if e.get("value") is not None}
    for m in entries:
        values[m][score] = None
    if spec.pool_normalise is not None:
        if len(ok) < 2:
            return
        outputs = [ScoreOutput(float(e["value"]), dict(e.get("details", {}))) for e in ok.values()]
        for m, v in zip(ok, spec.pool_normalise(outputs), strict=True):
            values[m][score] = float(v)
    else:
        for m, e in ok.items():
            values[m][score] = float(e["value"])


def dissenting(
    point: Mapping[str, Mapping[str, float | None]],
    directions: Mapping[str, str],
    scores: Sequence[str],
    first: str,
    second: str,
) -> list[str]:
    """The ``scores`` that put ``second`` strictly above ``first`` (within the pool's float
    tolerance, :data:`zoorank.combine.CONSTANT_RTOL`)."""
    models, matrix = oriented_matrix(point, directions, scores)
    ranks = score_ranks(matrix)
    a, b = models.index(first), models.index(second)
    return [s for j, s in enumerate(scores) if ranks[b, j] < ranks[a, j]]


def _top_two(
    pool: PoolRanking,
    ranks: np.ndarray,
    models: Sequence[str],
    point: Mapping[str, Mapping[str, float | None]],
    directions: Mapping[str, str],
    total: int,
) -> dict[str, Any]:
    """The share of drawn rankings in which the first of the point ranking ranks above the
    second, and a sentence saying whether that settles it (at >= 90 %)."""
    rows = pool.rows
    if len(rows) < 2:
        return {"p_first_above_second": 1.0, "settled": True, "text": "only one model was ranked"}
    a_name, b_name = str(rows[0]["model"]), str(rows[1]["model"])
    if pool.tie:
        return {
            "p_first_above_second": 0.5,
            "settled": False,
            "text": "The ranking is a tie: no score it could use tells these models apart"
            + (f" ({'; '.join(pool.left_out.values())})." if pool.left_out else "."),
        }
    if rows[0]["rank"] == rows[1]["rank"]:
        tied = [str(r["model"]) for r in rows if r["rank"] == rows[0]["rank"]]
        for_a = dissenting(point, directions, pool.used, b_name, a_name)
        for_b = dissenting(point, directions, pool.used, a_name, b_name)
        why = (
            f"{', '.join(for_a)} put{'s' if len(for_a) == 1 else ''} {a_name} higher, {', '.join(for_b)}"
            f" put{'s' if len(for_b) == 1 else ''} {b_name} higher, and their combination is equal"
            if for_a and for_b
            else "every score the ranking uses gives them the same place"
        )
        return {
            "p_first_above_second": 0.5,
            "settled": False,
            "text": f"{', '.join(tied)} are tied for first: {why}; fine-tune both if you can.",
        }
    a, b = models.index(a_name), models.index(b_name)
    share = float(np.mean(ranks[:, a] < ranks[:, b]))
    dissent = dissenting(point, directions, pool.used, a_name, b_name)
    capped = bool(dissent) and share >= total / (total + 1)
    if capped:
        share = total / (total + 1)
    if total == 1:
        text = (
            f"{a_name} ranks above {b_name} on the one score used, which could not be resampled:"
            " no estimate of how sure this order is."
        )
    elif share >= 0.9:
        text = f"{a_name} ranks above {b_name} in {share:.0%} of the drawn rankings: a clear first"
        text += (
            f", although {', '.join(dissent)} put{'s' if len(dissent) == 1 else ''} {b_name} higher."
            if dissent
            else "."
        )
    else:
        text = (
            f"The top two cannot be told apart: {a_name} ranks above {b_name} in only {share:.0%}"
            " of the rankings drawn"
            + (
                f" ({', '.join(dissent)} put{'s' if len(dissent) == 1 else ''} {b_name} higher)"
                if dissent
                else ""
            )
            + "; fine-tune both if you can."
        )
    return {
        "p_first_above_second": share,
        "settled": share >= 0.9 and total > 1,
        "text": text,
        "dissenting_scores": dissent,
        "capped": capped,
    }
