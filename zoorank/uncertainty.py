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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from zoorank.scores import ScoreInputs, ScoreOutput, get_score

RESAMPLED_NEEDS = frozenset({"features", "logits", "meta"})
INTERVAL_LEVEL = 0.9
BOOTSTRAP_KEY = "bootstrap"
# The resamples of one model may cost at most this share of what its forward pass and scores
# cost; a score whose resamples do not fit keeps its point value (and the job says so).
BUDGET_FRACTION = 0.2
# Rankings drawn per resample when the policy has a temperature (only sorting: cheap).
GUMBEL_DRAWS = 20


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
    of ``model_seconds`` (what the model's forward pass and scores took). One resample of a
    score is costed at half its point computation (it sees half the rows).

    >>> budgeted(["leep", "linear_probe", "nce"], {"leep": 0.02, "linear_probe": 0.7, "nce": 0.01},
    ...          10.0, resamples=100)
    ['nce', 'leep']
    """
    budget = fraction * model_seconds
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
    from zoorank.rank import _jsonable

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
                    entry["details"] = _jsonable(output.details)
            except Exception:  # a resample a score cannot handle counts as missing
                entry = {"value": None}
            out[name].append(entry)
    return out


def rank_uncertainty(
    point: Mapping[str, Mapping[str, float | None]],
    boot: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    rank_values: Callable[[dict[str, dict[str, float | None]]], Mapping[str, float]],
    order: Sequence[str],
    *,
    temperature: float | None = None,
    draws: int = GUMBEL_DRAWS,
    seed: int = 0,
    level: float = INTERVAL_LEVEL,
) -> dict[str, Any] | None:
    """Per model P(first) and a ``level`` rank interval over the stored resamples, and whether
    the top two of ``order`` (the point ranking) can be told apart.

    Args:
        point: model -> score -> point value (pool-normalised where the score has a pool step).
        boot: model -> score -> resamples (as :func:`bootstrap_values` returns them).
        rank_values: ``values (model -> score -> value) -> model -> combined value``; higher
            ranks first.
        order: the point ranking, best first.
        temperature: how far the combined value is from the truth, in its own units (fitted
            on the benchmark, :func:`zoorank.validate.selection.fit_temperature`): each
            resample's values get ``draws`` Gumbel perturbations of this scale, i.e. rankings
            drawn from the Plackett-Luce model with scores ``value / temperature``. ``None``:
            the resamples alone (data noise only; overconfident, see the benchmark).

    Returns ``None`` when no score was resampled and there is no temperature.
    """
    models = sorted(point)
    boot = {m: {s: v for s, v in boot.get(m, {}).items() if len(v)} for m in models}
    # A score resampled for some models only keeps its point value for all: a half-sample value
    # is not comparable with a full-sample one (LogME, for one, shifts with the sample size).
    scores = sorted({s for m in models for s in boot[m] if all(s in boot[o] for o in models)})
    counts = {len(boot[m][s]) for m in models for s in scores}
    if not models or len(counts) > 1 or (not scores and temperature is None):
        return None
    resamples = max(counts) if scores else 1
    per_resample = draws if temperature is not None else 1
    rng = np.random.default_rng(seed)
    ranks = np.zeros((resamples * per_resample, len(models)))
    for r in range(resamples):
        values = {m: dict(point[m]) for m in models}
        for score in scores:
            _resample_values(
                values, score, {m: boot[m][score][r] for m in models if score in boot.get(m, {})}
            )
        combined = rank_values(values)
        base = np.array([combined[m] for m in models])
        for d in range(per_resample):
            noisy = base if temperature is None else base + temperature * rng.gumbel(size=base.size)
            # rank 1 = highest; ties (no temperature) broken by name, as in the point ranking
            ordered = sorted(range(len(models)), key=lambda i: (-noisy[i], models[i]))
            ranks[r * per_resample + d, ordered] = np.arange(1, len(models) + 1)
    tail = (1 - level) / 2
    per_model = {
        m: {
            "p_top1": float(np.mean(ranks[:, i] == 1)),
            "rank_interval": [
                int(np.floor(np.quantile(ranks[:, i], tail))),
                int(np.ceil(np.quantile(ranks[:, i], 1 - tail))),
            ],
        }
        for i, m in enumerate(models)
    }
    return {
        "resamples": resamples if scores else 0,
        "draws": len(ranks),
        "temperature": temperature,
        "level": level,
        "method": (
            "stratified half-samples of the job's rows, without replacement"
            + (
                f"; rankings drawn around each at the benchmark's error scale (temperature {temperature:.3g})"
                if temperature is not None
                else ""
            )
        ),
        "resampled_scores": scores,
        "per_model": per_model,
        "top_two": _top_two(list(order), ranks, models),
    }


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


def _top_two(order: Sequence[str], ranks: np.ndarray, models: Sequence[str]) -> dict[str, Any]:
    """The share of drawn rankings in which the first of ``order`` ranks above the second, and a
    sentence saying whether that settles it (at >= 90 %)."""
    if len(order) < 2:
        return {"p_first_above_second": 1.0, "settled": True, "text": "only one model was ranked"}
    a, b = models.index(order[0]), models.index(order[1])
    share = float(np.mean(ranks[:, a] < ranks[:, b]))
    if share >= 0.9:
        text = f"{order[0]} ranks above {order[1]} in {share:.0%} of the drawn rankings: a clear first."
    else:
        text = (
            f"The top two cannot be told apart: {order[0]} ranks above {order[1]} in only {share:.0%}"
            " of the rankings drawn (resamples of your data, and the default's error on the benchmark);"
            " fine-tune both if you can."
        )
    return {"p_first_above_second": share, "settled": share >= 0.9, "text": text}
