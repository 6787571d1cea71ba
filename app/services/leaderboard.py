"""The leaderboard: comparable stored results of a dataset, ranked."""

from __future__ import annotations

from typing import Any

from zoorank_app.db import crud

from zoorank.data.datasets import check_ref
from zoorank.errors import InvalidInputError
from zoorank.policy import DEFAULT_RANKING, job_policy
from zoorank.rank import (
    VALUE_OPTIONS,
    ModelResult,
    ScoreRecord,
    comparability_key,
    summarise,
)
from zoorank.scores import get_score


def leaderboard(session: Any, *, dataset: str, score: str | None, option_set: str | None) -> dict[str, Any]:
    """Models on ``dataset`` ranked by ``score`` (``None``: the default ranking), using only
    results that are comparable: one option set (:func:`zoorank.rank.comparability_key`), from
    succeeded or partial jobs, the latest value per (model, score). Pool-relative steps (NCTI,
    z-scores of the default ranking) and the ranking's uncertainty are recomputed over the
    models shown."""
    from zoorank_app.confirmations import confirmed_picks  # local: only the leaderboard reads confirmations

    check_ref(dataset)
    if score is not None:
        get_score(score)
    confirmed = confirmed_picks(session, dataset)
    sets: dict[str, dict[str, Any]] = {}
    latest: dict[str, dict[str, dict[str, tuple[Any, Any]]]] = {}
    for row, job in crud.leaderboard_rows(session, dataset=dataset):
        key = comparability_key(job.dataset_fingerprint or "", job.sample_ids or [], job.options)
        info = sets.setdefault(
            key,
            {
                "key": key,
                "options": {k: job.options.get(k) for k in VALUE_OPTIONS},
                "jobs": set(),
                "models": set(),
            },
        )
        info.setdefault("jobs", set()).add(job.id)
        info.setdefault("models", set()).add(row.model)
        info["last"] = row.created_at
        latest.setdefault(key, {}).setdefault(row.model, {})
        latest[key][row.model][row.score] = (row, job)
    listed = sorted(sets.values(), key=lambda i: i["last"], reverse=True)
    public_sets = [
        {"key": i["key"], "options": i["options"], "jobs": len(i["jobs"]), "models": len(i["models"])}
        for i in listed
    ]
    if not listed:
        return {
            "option_set": None,
            "option_sets": [],
            "rows": [],
            "policy": None,
            "rule": None,
            "left_out": {},
            "uncertainty": None,
            "confirmed": confirmed,
        }
    chosen = option_set or listed[0]["key"]
    if chosen not in sets:
        raise InvalidInputError(
            f"no results on {dataset} under option set {chosen!r}; option sets: "
            + ", ".join(i["key"] for i in listed),
            field="option_set",
        )
    per_model = latest[chosen]
    results = [
        ModelResult(
            model=model,
            scores={
                name: ScoreRecord(name, r.value, r.direction, r.params, r.details, r.seconds, r.error)
                for name, (r, _) in scores.items()
            },
        )
        for model, scores in per_model.items()
    ]
    score_names = sorted({name for scores in per_model.values() for name in scores})
    # The default's weights apply to its own score set: when the stored results hold it, the
    # board is ranked by the default over those scores; otherwise by the mean rank of what is there.
    default_set = set(DEFAULT_RANKING.scores) <= set(score_names)
    policy = job_policy(list(DEFAULT_RANKING.scores) if default_set else score_names)
    ranking, pool = summarise(results, score_names, policy)
    truth = crud.ground_truth(session, dataset=dataset)

    def source(model: str) -> tuple[Any, Any]:
        wanted = per_model[model].get(score) if score else None
        return wanted or max(per_model[model].values(), key=lambda rj: rj[0].created_at)

    if score is None:
        ordered = [(row["model"], row["value"], row) for row in ranking["aggregate"]]
        left_out, rule = ranking["left_out"], ranking["rule"]
    else:
        ordered = [
            (m, pool.get(score, {}).get(m, per_model[m][score][0].value), {})
            for m in ranking["by_score"].get(score, [])
        ]
        left_out, rule = {}, f"{score} alone"
    rows = []
    for position, (model, value, extra) in enumerate(ordered, start=1):
        row, job = source(model)
        gt = truth.get((job.dataset_fingerprint, model))
        rows.append(
            {
                "rank": extra.get("rank", position),
                "model": model,
                "dataset": dataset,
                "value": None if value is None else float(value),
                "failed": extra.get("failed"),
                "job_id": job.id,
                "computed_at": row.created_at,
                "p_top1": extra.get("p_top1"),
                "rank_interval": extra.get("rank_interval"),
                "ground_truth": gt.accuracy if gt else None,
                "ground_truth_mode": gt.mode if gt else None,
            }
        )
    return {
        "option_set": next(i for i in public_sets if i["key"] == chosen),
        "option_sets": public_sets,
        "rows": rows,
        "policy": ranking["policy"],
        "rule": rule,
        "left_out": left_out,
        "uncertainty": ranking.get("uncertainty") if score is None else None,
        "confirmed": confirmed,
    }
