"""Results as CSV tables: a job's ranking with its scores, a validation's ground truth, and a
leaderboard. The tables are built here and written by :func:`to_csv`, the one writer the API
(``?format=csv``), the pages' download links and the CLI (``--csv``) all use.

Columns of a ranking job (one row per model: ranked models best first, then the others):

* ``job_id``, ``dataset``: the job and its dataset reference (repeated, so exports concatenate);
* ``rank``: 1 = best (a failed model is ranked last; empty while the job has no ranking);
* ``model``, ``status`` (the model's: ``queued``, ``running``, ``succeeded``, ``failed``, ...);
* ``aggregate``: the ranking's combined value, higher is better (a combined z-score, or minus the
  mean rank for a ``mean_rank`` policy); ``p_top1``: the probability of being the best model;
  ``rank_low``, ``rank_high``: the 90 % rank interval;
* ``error``: why the model failed or is ranked without a value;
* then one column per score of the job, named by the score: its raw value (before any
  pool normalisation); empty where the score failed.

Columns of a validation job: ``job_id``, ``dataset``, ``model``, ``status``, ``test_accuracy``
(mean over seeds), ``test_accuracy_std``, ``error``.

Columns of a leaderboard (one row per model, best first): ``rank``, ``model``, ``value`` (the
value ranked by), ``p_top1``, ``rank_low``, ``rank_high``, ``ground_truth`` (test accuracy where
a validation measured it), ``ground_truth_mode``, ``failed``, ``job_id`` (the job the value came
from), ``computed_at``, ``dataset``, ``ranked_by`` (the score, or the default ranking's name) and
``option_set`` (the options under which the values are comparable).

Numbers are written in full precision, an absent value as an empty cell. A text cell that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``) is prefixed with
``'``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

Table = tuple[list[str], list[dict[str, Any]]]

RANKING_COLUMNS = [
    "job_id",
    "dataset",
    "rank",
    "model",
    "status",
    "aggregate",
    "p_top1",
    "rank_low",
    "rank_high",
    "error",
]
VALIDATION_COLUMNS = ["job_id", "dataset", "model", "status", "test_accuracy", "test_accuracy_std", "error"]
LEADERBOARD_COLUMNS = [
    "rank",
    "model",
    "value",
    "p_top1",
    "rank_low",
    "rank_high",
    "ground_truth",
    "ground_truth_mode",
    "failed",
    "job_id",
    "computed_at",
    "dataset",
    "ranked_by",
    "option_set",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def to_csv(table: Table) -> str:
    """The table as CSV text (RFC 4180: a header row, CRLF line ends, quoting where needed)."""
    columns, rows = table
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_cell(c) for c in columns])
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _interval(row: Mapping[str, Any]) -> tuple[Any, Any]:
    interval = row.get("rank_interval") or (None, None)
    return interval[0], interval[1]


def ranking_table(
    *,
    job_id: str,
    dataset: str,
    ranking: Mapping[str, Any] | None,
    scores: Sequence[str],
    values: Mapping[str, Mapping[str, float | None]],
    status: Mapping[str, str],
    errors: Mapping[str, str | None],
) -> Table:
    """One row per model of ``status`` (model -> its status, in the job's order): ranked models
    in ranked order, then any the ranking does not hold yet; ``values``: model -> score -> value."""
    ranked = list((ranking or {}).get("aggregate", []))
    by_model = {row["model"]: row for row in ranked}
    order = [row["model"] for row in ranked] + [m for m in status if m not in by_model]
    rows = []
    for model in order:
        row = by_model.get(model, {})
        low, high = _interval(row)
        rows.append(
            {
                "job_id": job_id,
                "dataset": dataset,
                "rank": row.get("rank"),
                "model": model,
                "status": status.get(model, ""),
                "aggregate": row.get("value"),
                "p_top1": row.get("p_top1"),
                "rank_low": low,
                "rank_high": high,
                "error": row.get("failed") or errors.get(model),
                **{score: values.get(model, {}).get(score) for score in scores},
            }
        )
    return [*RANKING_COLUMNS, *scores], rows


def job_table(job: Mapping[str, Any]) -> Table:
    """The table of a job as the API answers it (``GET /v1/jobs/{id}``): its ranking and scores,
    or a validation's ground truth."""
    progress = {p["model"]: p for p in job.get("progress", [])}
    status = {m: progress[m]["status"] if m in progress else "" for m in job.get("models", [])}
    errors = {m: p.get("error") for m, p in progress.items()}
    if job.get("kind") == "validation":
        truth = {g["model"]: g for g in (job.get("ranking") or {}).get("ground_truth", [])}
        rows = [
            {
                "job_id": job["id"],
                "dataset": job["dataset"],
                "model": model,
                "status": model_status,
                "test_accuracy": truth.get(model, {}).get("accuracy"),
                "test_accuracy_std": truth.get(model, {}).get("accuracy_std"),
                "error": truth.get(model, {}).get("error") or errors.get(model),
            }
            for model, model_status in status.items()
        ]
        return list(VALIDATION_COLUMNS), rows
    values: dict[str, dict[str, float | None]] = {}
    for r in job.get("results", []):
        values.setdefault(r["model"], {})[r["score"]] = r["value"]
    return ranking_table(
        job_id=job["id"],
        dataset=job["dataset"],
        ranking=job.get("ranking"),
        scores=list(job.get("scores", [])),
        values=values,
        status=status,
        errors=errors,
    )


def rank_result_table(result: Mapping[str, Any]) -> Table:
    """The table of an in-process ranking (``zoorank.rank.Ranking.to_dict()``, ``zoorank rank``)."""
    models = result["results"]
    scores = list(dict.fromkeys(s for r in models for s in r["scores"]))
    return ranking_table(
        job_id="",
        dataset=result["dataset"],
        ranking=result["ranking"],
        scores=scores,
        values={r["model"]: {s: v["value"] for s, v in r["scores"].items()} for r in models},
        status={r["model"]: "failed" if r.get("error") else "succeeded" for r in models},
        errors={r["model"]: r.get("error") for r in models},
    )


def leaderboard_table(board: Mapping[str, Any]) -> Table:
    """The table of a leaderboard as the API answers it (``GET /v1/leaderboard``)."""
    ranked_by = board.get("score") or (board.get("policy") or {}).get("name") or "default ranking"
    option_set = (board.get("option_set") or {}).get("key")
    rows = []
    for row in board.get("data", []):
        low, high = _interval(row)
        rows.append(
            {
                **{c: row.get(c) for c in LEADERBOARD_COLUMNS},
                "rank_low": low,
                "rank_high": high,
                "ranked_by": ranked_by,
                "option_set": option_set,
            }
        )
    return list(LEADERBOARD_COLUMNS), rows
