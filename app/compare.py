"""Two ranking jobs side by side (``GET /v1/compare``, the page ``/compare``): each model of
either job with its rank, aggregate and scores in both, and what the two jobs were asked
differently."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from zoorank_app.db import crud
from zoorank_app.db.models import Job
from zoorank_app.problems import ProblemError
from zoorank_app.schemas import ComparisonPublic

from zoorank.rank import comparability_key

# Besides the options themselves: what else a job was asked, in the order shown.
ASKED = ("dataset", "dataset_content", "models", "scores")


def _job(session: Session, job_id: str, side: str) -> Job:
    job = crud.get_job(session, job_id)
    if job is None:
        raise ProblemError(404, "Not found", f"no job with id {job_id} (parameter {side})", field=side)
    if job.kind != "ranking":
        raise ProblemError(
            422,
            "Invalid input",
            f"job {job_id} (parameter {side}) is a {job.kind} job; only ranking jobs are compared",
            field=side,
        )
    return job


def _asked(job: Job) -> dict[str, Any]:
    return {
        "dataset": job.dataset,
        "dataset_content": job.dataset_fingerprint,
        "models": list(job.models),
        "scores": list(job.scores),
        **{k: v for k, v in sorted(job.options.items())},
    }


def _differ(key: str, a: Any, b: Any) -> bool:
    """Whether an option differs; the models and scores as sets (their order changes nothing)."""
    if key in ("models", "scores"):
        return set(a or ()) != set(b or ())
    return bool(a != b)


def _side(session: Session, job: Job) -> dict[str, Any]:
    """Per model of the job: status, rank, aggregate and score values."""
    ranked = {row["model"]: row for row in (job.ranking or {}).get("aggregate", [])}
    status = {m.model: m.status for m in crud.job_models(session, job.id)}
    values: dict[str, dict[str, float | None]] = {}
    for r in crud.job_results(session, job.id):
        values.setdefault(r.model, {})[r.score] = r.value
    return {"ranked": ranked, "status": status, "values": values}


def compare_jobs(session: Session, a_id: str, b_id: str) -> ComparisonPublic:
    """The comparison of jobs ``a_id`` and ``b_id`` (ids or unique prefixes); 404 for an
    unknown id, 422 for a job that is not a ranking."""
    a, b = _job(session, a_id, "a"), _job(session, b_id, "b")
    sides = {"a": _side(session, a), "b": _side(session, b)}
    asked_a, asked_b = _asked(a), _asked(b)
    differences = [
        {"option": key, "a": asked_a.get(key), "b": asked_b.get(key)}
        for key in dict.fromkeys([*asked_a, *asked_b])
        if _differ(key, asked_a.get(key), asked_b.get(key))
    ]
    scores = list(dict.fromkeys([*a.scores, *b.scores]))
    models = list(dict.fromkeys([*a.models, *b.models]))
    far = len(models) + 1

    def order(model: str) -> tuple[int, int, str]:
        rank_a = sides["a"]["ranked"].get(model, {}).get("rank", far)
        rank_b = sides["b"]["ranked"].get(model, {}).get("rank", far)
        return (rank_a, rank_b, model)

    rows = []
    for model in sorted(models, key=order):
        row: dict[str, Any] = {"model": model, "scores": {}}
        for side, data in sides.items():
            ranked = data["ranked"].get(model, {})
            row[f"rank_{side}"] = ranked.get("rank")
            row[f"aggregate_{side}"] = ranked.get("value")
            row[f"status_{side}"] = data["status"].get(model)
        both = row["rank_a"] is not None and row["rank_b"] is not None
        row["rank_change"] = row["rank_a"] - row["rank_b"] if both else None
        row["scores"] = {
            s: {
                "a": sides["a"]["values"].get(model, {}).get(s),
                "b": sides["b"]["values"].get(model, {}).get(s),
            }
            for s in scores
        }
        rows.append(row)
    same_values = comparability_key(a.dataset_fingerprint or "", a.sample_ids or [], a.options) == (
        comparability_key(b.dataset_fingerprint or "", b.sample_ids or [], b.options)
    )
    return ComparisonPublic.model_validate(
        {
            "a": _summary(a),
            "b": _summary(b),
            "comparable": same_values and a.sample_ids is not None,
            "differences": differences,
            "scores": scores,
            "models": rows,
        }
    )


def _summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "dataset": job.dataset,
        "created_at": job.created_at,
        "ranked_by": ((job.ranking or {}).get("policy") or {}).get("name"),
        "by_mean_rank": ((job.ranking or {}).get("policy") or {}).get("method") == "mean_rank",
    }
