"""The CSV tables (zoorank.export), the API's choice of CSV (app.export) and the progress and
ETA rule (app.progress), on hand-made inputs whose answers are known."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from zoorank_app.export import ExportFormat, wants_csv
from zoorank_app.progress import duration, eta_seconds, job_progress

from zoorank.export import LEADERBOARD_COLUMNS, RANKING_COLUMNS, job_table, rank_result_table, to_csv

JOB = {
    "id": "j1",
    "kind": "ranking",
    "dataset": "builtin:digits",
    "models": ["m1", "m2", "m3"],
    "scores": ["logme", "nce"],
    "progress": [
        {"model": "m1", "status": "succeeded", "error": None},
        {"model": "m2", "status": "failed", "error": "RuntimeError: out of memory"},
        {"model": "m3", "status": "succeeded", "error": None},
    ],
    "results": [
        {"model": "m1", "score": "logme", "value": 0.5},
        {"model": "m1", "score": "nce", "value": -1.25},
        {"model": "m3", "score": "logme", "value": 0.75},
        {"model": "m3", "score": "nce", "value": None},
    ],
    "ranking": {
        "aggregate": [
            {"model": "m3", "value": 1.0, "rank": 1, "p_top1": 0.8, "rank_interval": [1, 2]},
            {"model": "m1", "value": -1.0, "rank": 2, "p_top1": 0.2, "rank_interval": [1, 2]},
            {"model": "m2", "value": None, "rank": 3, "failed": "RuntimeError: out of memory"},
        ]
    },
}


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_job_table_has_one_row_per_model_in_ranked_order_with_every_score():
    text = to_csv(job_table(JOB))
    assert text.splitlines()[0] == ",".join([*RANKING_COLUMNS, "logme", "nce"])
    assert text.endswith("\r\n")  # RFC 4180 line ends
    rows = _rows(text)
    assert [(r["rank"], r["model"], r["status"]) for r in rows] == [
        ("1", "m3", "succeeded"),
        ("2", "m1", "succeeded"),
        ("3", "m2", "failed"),
    ]
    assert rows[0]["logme"] == "0.75" and rows[0]["nce"] == "" and rows[0]["p_top1"] == "0.8"
    assert (rows[0]["rank_low"], rows[0]["rank_high"]) == ("1", "2")
    assert rows[1]["nce"] == "-1.25" and rows[1]["aggregate"] == "-1.0"  # numbers are not escaped
    assert rows[2]["aggregate"] == "" and rows[2]["error"] == "RuntimeError: out of memory"
    assert {r["job_id"] for r in rows} == {"j1"} and {r["dataset"] for r in rows} == {"builtin:digits"}


def test_a_job_without_a_ranking_lists_its_models_with_their_status():
    running = {**JOB, "ranking": None, "results": [], "progress": [{"model": "m1", "status": "running"}]}
    rows = _rows(to_csv(job_table(running)))
    assert [(r["model"], r["status"], r["rank"]) for r in rows] == [
        ("m1", "running", ""),
        ("m2", "", ""),
        ("m3", "", ""),
    ]


def test_a_validation_exports_its_ground_truth():
    validation = {
        "id": "v1",
        "kind": "validation",
        "dataset": "builtin:digits",
        "models": ["m1", "m2"],
        "progress": [
            {"model": "m1", "status": "succeeded"},
            {"model": "m2", "status": "failed", "error": "x"},
        ],
        "ranking": {"ground_truth": [{"model": "m1", "accuracy": 0.9, "accuracy_std": 0.01, "error": None}]},
    }
    rows = _rows(to_csv(job_table(validation)))
    assert [(r["model"], r["test_accuracy"], r["error"]) for r in rows] == [
        ("m1", "0.9", ""),
        ("m2", "", "x"),
    ]


def test_cells_a_spreadsheet_would_run_as_formulas_are_quoted_as_text():
    failed = [{"model": "m1", "status": "failed", "error": '=HYPERLINK("x")'}]
    job = {**JOB, "progress": failed, "ranking": None}
    rows = _rows(to_csv(job_table(job)))
    assert rows[0]["error"] == '\'=HYPERLINK("x")'
    assert _rows(to_csv((["a"], [{"a": "-1+2"}, {"a": "@SUM"}, {"a": "plain, with a comma"}]))) == [
        {"a": "'-1+2"},
        {"a": "'@SUM"},
        {"a": "plain, with a comma"},
    ]


def test_an_in_process_ranking_gives_the_same_table():
    ranking = {
        "dataset": "builtin:digits",
        "results": [
            {"model": "m1", "scores": {"logme": {"value": 0.5}}, "error": None},
            {"model": "m2", "scores": {}, "error": "broken weights"},
        ],
        "ranking": {
            "aggregate": [
                {"model": "m1", "value": 0.0, "rank": 1},
                {"model": "m2", "value": None, "rank": 2, "failed": "broken weights"},
            ]
        },
    }
    columns, rows = rank_result_table(ranking)
    assert columns == [*RANKING_COLUMNS, "logme"]
    assert [(r["model"], r["status"], r["logme"], r["error"]) for r in rows] == [
        ("m1", "succeeded", 0.5, None),
        ("m2", "failed", None, "broken weights"),
    ]


def test_leaderboard_columns_are_documented_and_complete():
    from zoorank.export import leaderboard_table

    board = {
        "score": None,
        "policy": {"name": "default-v1"},
        "option_set": {"key": "k1"},
        "data": [{"rank": 1, "model": "m1", "value": 0.1, "rank_interval": [1, 3], "job_id": "j1"}],
    }
    columns, rows = leaderboard_table(board)
    assert columns == LEADERBOARD_COLUMNS
    assert rows[0]["ranked_by"] == "default-v1" and rows[0]["option_set"] == "k1"
    assert (rows[0]["rank_low"], rows[0]["rank_high"]) == (1, 3)


@pytest.mark.parametrize(
    ("accept", "format_", "csv_"),
    [
        (None, None, False),
        ("*/*", None, False),
        ("text/csv", None, True),
        ("text/csv;q=0.9, application/json;q=0.5", None, True),
        ("application/json, text/csv", None, False),  # a tie: JSON
        ("text/csv;q=0", None, False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", None, False),
        ("application/json", ExportFormat.CSV, True),  # the parameter decides
        ("text/csv", ExportFormat.JSON, False),
    ],
)
def test_csv_is_answered_when_the_request_asks_for_it(accept, format_, csv_):
    assert wants_csv(accept, format_) is csv_


def _row(status: str, done: int = 0, total: int = 0) -> SimpleNamespace:
    return SimpleNamespace(status=status, images_done=done, images_total=total)


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_ranking_eta_is_the_elapsed_time_per_finished_model_times_those_left():
    rows = [_row("succeeded"), _row("failed"), _row("running", 30, 100), _row("queued"), _row("queued")]
    progress = job_progress(
        kind="ranking", status="running", started_at=NOW - timedelta(seconds=60), models=rows, now=NOW
    )
    assert (progress["done"], progress["total"], progress["unit"]) == (2, 5, "models")
    assert progress["fraction"] == pytest.approx(0.4)
    assert progress["eta_seconds"] == pytest.approx(90.0)  # 30 s per model, 3 left
    assert progress["text"] == "2 of 5 models done; about 2 min left"
    queued = job_progress(kind="ranking", status="queued", started_at=None, models=rows[3:], now=NOW)
    assert queued["eta_seconds"] is None and queued["elapsed_seconds"] is None
    assert queued["text"] == "0 of 2 models done; ETA after the first finishes"
    ended = job_progress(kind="ranking", status="partial", started_at=NOW, models=rows[:2], now=NOW)
    assert ended["eta_seconds"] == 0.0 and ended["text"] == "2 of 2 models done" and ended["fraction"] == 1.0


def test_a_validation_counts_its_steps():
    # two steps a model (scored, then trained): one trained, one scored and waiting, one training
    rows = [_row("succeeded", 2, 2), _row("queued", 1, 2), _row("running", 1, 2)]
    progress = job_progress(
        kind="validation", status="running", started_at=NOW - timedelta(seconds=40), models=rows, now=NOW
    )
    assert (progress["done"], progress["total"], progress["unit"]) == (4, 6, "steps")
    assert progress["eta_seconds"] == pytest.approx(20.0)  # 10 s per step, 2 left
    old = [_row("running"), _row("queued")]  # a validation from before steps were counted
    assert (
        job_progress(kind="validation", status="running", started_at=NOW, models=old, now=NOW)["unit"]
        == "models"
    )


def test_one_eta_rule_and_its_words():
    assert (
        eta_seconds(3, 8, 12.0) == 60.0 and eta_seconds(8, 8, 12.0) == 0.0 and eta_seconds(1, 8, None) is None
    )
    assert [duration(s) for s in (None, 0.2, 40, 150, 7200)] == [
        "unknown",
        "about 1 s",
        "about 40 s",
        "about 2 min",
        "about 2.0 h",
    ]
