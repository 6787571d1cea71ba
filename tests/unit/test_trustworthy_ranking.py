"""The top-line ranking as a user meets it (issue 21): the CLI and the API on real models, with
other options than the defaults. Every expectation follows from the job's own scores, read back
from the same output, never from a value written down here."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from zoorank_app.main import create_app
from zoorank_app.services.runner import finalise_job, run_model
from zoorank_app.settings import Settings

from zoorank.cli import app as cli

PAIR = "mobilenetv2_100,mobilenetv2_100@random"
OPTIONS = ["--samples-per-class", "10", "--input-size", "32"]


def _rank_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["rank", "--dataset", "builtin:digits", *OPTIONS, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _values(out: dict) -> dict[str, dict[str, float | None]]:
    return {r["model"]: {s: rec["value"] for s, rec in r["scores"].items()} for r in out["results"]}


def _agreed_best(values: dict, scores: list[str]) -> str | None:
    """The model every score puts first (None when they disagree)."""
    from zoorank.scores import get_score

    firsts = set()
    for score in scores:
        sign = 1.0 if get_score(score).direction == "higher" else -1.0
        firsts.add(max(values, key=lambda m: sign * values[m][score]))
    return firsts.pop() if len(firsts) == 1 else None


def test_the_readme_example_follows_its_scores_in_the_json_and_the_table():
    """Caught: `--scores logme,leep` on the README's pair ranked the random-init model first
    while both scores preferred the pretrained one."""
    out = _rank_json("--models", PAIR, "--scores", "logme,leep")
    ranking = out["ranking"]
    agreed = _agreed_best(_values(out), ["logme", "leep"])
    if agreed is not None:
        assert ranking["aggregate"][0]["model"] == agreed
    assert ranking["policy"]["name"] == "mean-rank-of-chosen" and "no fitted weights" in ranking["rule"]
    for row in ranking["aggregate"]:  # every ranking has them, in the CLI too
        assert 0.0 <= row["p_top1"] <= 1.0 and 1 <= row["rank_interval"][0] <= row["rank_interval"][1] <= 2
    table = CliRunner().invoke(
        cli, ["rank", "--dataset", "builtin:digits", *OPTIONS, "--models", PAIR, "--scores", "logme,leep"]
    )
    assert (
        table.exit_code == 0
        and "P(top-1)" in table.output
        and "mean rank over the chosen scores" in table.output
    )


def test_one_score_alone_ranks_as_that_score():
    """Caught: `--scores knn` alone ranked in the exact reverse of kNN."""
    out = _rank_json(
        "--models", "mobilenetv2_100,mobilenetv2_100@random,tf_efficientnet_lite0", "--scores", "knn"
    )
    ranking = out["ranking"]
    assert [r["model"] for r in ranking["aggregate"] if r["rank"] == 1] or ranking["tie"]
    knn = {m: v["knn"] for m, v in _values(out).items()}
    ranks = {r["model"]: r["rank"] for r in ranking["aggregate"]}
    for m in knn:
        assert ranks[m] == 1 + sum(knn[o] > knn[m] for o in knn)


def test_a_constant_score_is_left_out_and_said_and_all_constant_is_a_tie():
    """sfda is 1.0 for every model at this size (saturated), hscore equal up to float noise:
    they are left out in words; with nothing else the ranking is a tie, no order invented."""
    out = _rank_json("--models", PAIR, "--scores", "sfda,hscore")
    values = _values(out)
    ranking = out["ranking"]
    flat = [s for s in ("sfda", "hscore") if len({round(v[s], 9) for v in values.values()}) == 1]
    assert flat, "precondition: at least one of sfda, hscore is flat on this pair"
    for score in flat:
        assert "equal for every model" in ranking["left_out"][score]
    if len(flat) == 2:
        assert ranking["tie"] and {r["rank"] for r in ranking["aggregate"]} == {1}
        assert "tie" in ranking["uncertainty"]["top_two"]["text"]
        assert all(r["p_top1"] == pytest.approx(0.5) for r in ranking["aggregate"])
    table = CliRunner().invoke(
        cli, ["rank", "--dataset", "builtin:digits", *OPTIONS, "--models", PAIR, "--scores", "sfda,hscore"]
    )
    assert all(f"{s}: equal for every model" in table.output for s in flat)
    assert all(f"{s} (left out)" in table.output.replace("\n", " ") or len(s) > 5 for s in flat)


def test_a_pool_of_one_model_has_one_row_and_no_warning():
    result = CliRunner().invoke(
        cli,
        ["rank", "--dataset", "builtin:digits", *OPTIONS, "--models", "mobilenetv2_100", "--scores", "leep"],
    )
    assert result.exit_code == 0, result.output
    assert "only one model was ranked" in result.output and "warn" not in result.output.lower()
    out = _rank_json("--models", "mobilenetv2_100", "--scores", "leep")
    (row,) = out["ranking"]["aggregate"]
    assert row["p_top1"] == 1.0 and row["rank_interval"] == [1, 1] and row["rank"] == 1


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])

    def dispatch(job_id: str, models: list[str]) -> list[str]:
        for model in models:
            run_model(settings, job_id, model)
        finalise_job(settings, job_id)
        return [f"task-{m}" for m in models]

    return TestClient(create_app(settings, dispatch=dispatch, revoke=lambda ids: None))


def _finished_job(client: TestClient, scores: list[str]) -> dict:
    """The README's pair ranked over HTTP by ``scores``, run to the end."""
    body = {
        "dataset": "builtin:digits",
        "models": PAIR.split(","),
        "scores": scores,
        "options": {"samples_per_class": 10, "input_size": 32, "tap_images_per_class": 0},
    }
    job = client.post("/v1/jobs", json=body).json()
    got = client.get(f"/v1/jobs/{job['id']}").json()
    assert got["status"] == "succeeded", got
    return got


def test_over_http_the_pick_follows_the_scores_and_is_never_certain_against_them(client):
    """Caught: over HTTP a job said "a clear first", P(top-1) = 1.0, for the reversed pick."""
    got = _finished_job(client, ["logme", "leep"])
    job = got
    values = {m: {r["score"]: r["value"] for r in got["results"] if r["model"] == m} for m in PAIR.split(",")}
    ranking = got["ranking"]
    agreed = _agreed_best(values, ["logme", "leep"])
    top = ranking["aggregate"][0]
    if agreed is not None:
        assert top["model"] == agreed
    else:  # the scores disagree on the top two: never certain
        assert top["p_top1"] < 1.0 and not ranking["uncertainty"]["top_two"]["settled"]
    assert "no fitted weights" in ranking["rule"]
    page = client.get(f"/jobs/{job['id']}")
    assert page.status_code == 200 and "mean rank over the chosen scores" in page.text


def test_over_http_a_flat_score_is_named_on_the_job_and_its_page(client):
    got = _finished_job(client, ["sfda", "leep"])
    job = got
    sfda = {r["value"] for r in got["results"] if r["score"] == "sfda"}
    if len({round(v, 9) for v in sfda}) == 1:
        assert "sfda: equal for every model" in got["ranking"]["left_out"]["sfda"]
        page = client.get(f"/jobs/{job['id']}").text
        assert "sfda: equal for every model" in page and "sfda (left out)" in page
        assert got["ranking"]["used_scores"] == ["leep"]
