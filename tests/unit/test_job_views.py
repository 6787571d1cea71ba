"""Everyday views of jobs through the API, the pages and the CLI: CSV export of a job and of
the leaderboard, two jobs compared, a job's overall progress and ETA (a validation's too, step
by step), and the datasets with their classes.

Two tiny rankings and one tiny validation run once for the module (inline workers, SQLite)."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner
from zoorank_app.db import crud
from zoorank_app.db.session import session_scope
from zoorank_app.routes.jobs import job_public
from zoorank_app.settings import Settings

from tests.service_harness import inline_client, serve_in_thread, zip_archive
from zoorank.cli import app as cli
from zoorank.data.datasets import encode_png

pytestmark = pytest.mark.slow  # about 40 s for the module on 2 cores

MODELS = ["resnet10t@random", "test_resnet@random"]
A = {
    "dataset": "builtin:digits",
    "models": MODELS,
    "scores": ["nce", "logme"],
    "options": {"samples_per_class": 10, "input_size": 32},
}
B = {**A, "models": MODELS[::-1], "scores": ["logme"], "options": {"samples_per_class": 8, "input_size": 32}}
VALIDATION = {
    "dataset": "builtin:digits",
    "models": MODELS,
    "scores": ["nce"],
    "mode": "linear",
    "seeds": [0],
    "settings": {"train_per_class": 12, "val_per_class": 4, "test_per_class": 10, "input_size": 32},
}
runner = CliRunner()


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("job-views")
    settings = Settings(var_dir=tmp / "var", data_roots=[tmp / "data"], sweep_interval=0)
    client = inline_client(settings)
    a = client.post("/v1/jobs", json=A).json()["id"]
    b = client.post("/v1/jobs", json=B).json()["id"]
    steps: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("zoorank.groundtruth.validate", _watching(settings, steps))
        validation = client.post("/v1/validations", json=VALIDATION)
    assert validation.status_code == 202, validation.text
    jobs = {name: client.get(f"/v1/jobs/{i}").json() for name, i in (("a", a), ("b", b))}
    jobs["validation"] = client.get(f"/v1/jobs/{validation.json()['id']}").json()
    assert [j["status"] for j in jobs.values()] == ["succeeded"] * 3, jobs
    return {"settings": settings, "client": client, "steps": steps, **jobs}


def _watching(settings: Settings, steps: list[dict[str, Any]]) -> Any:
    """``validate`` that records the job as the API shows it after each progress callback."""
    from zoorank.groundtruth import validate

    def look(event: str) -> None:
        with session_scope(settings.database_url) as session:
            job = crud.list_jobs(session, offset=0, limit=1)[0][0]  # the validation: the latest job
            public = job_public(session, job)
        steps.append(
            {
                "event": event,
                "models": [(p.model, p.status, p.images_done, p.images_total) for p in public.progress],
                "overall": public.overall.model_dump() if public.overall else None,
            }
        )

    def watched(*args: Any, on_model: Any, on_truth: Any, **kwargs: Any) -> Any:
        def model(stage: str, name: str, index: int, total: int) -> None:
            on_model(stage, name, index, total)
            look(f"{stage} {name}")

        def truth(found: Any) -> None:
            on_truth(found)
            look(f"trained {found.model}")

        return validate(*args, on_model=model, on_truth=truth, **kwargs)

    return watched


# -- export ----------------------------------------------------------------------------------


def test_a_job_exports_its_ranking_and_scores_as_csv(jobs):
    client, job = jobs["client"], jobs["a"]
    response = client.get(f"/v1/jobs/{job['id']}", params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert (
        response.headers["content-disposition"] == f'attachment; filename="zoorank-job-{job["id"][:8]}.csv"'
    )
    rows = _csv(response.text)
    ranked = job["ranking"]["aggregate"]
    assert [(int(r["rank"]), r["model"]) for r in rows] == [(row["rank"], row["model"]) for row in ranked]
    values = {(r["model"], r["score"]): r["value"] for r in job["results"]}
    for row in rows:
        assert row["status"] == "succeeded" and row["job_id"] == job["id"]
        for score in A["scores"]:
            assert _number(row[score]) == pytest.approx(values[(row["model"], score)])
    # Accept: text/csv asks for the same; JSON stays the default
    assert client.get(f"/v1/jobs/{job['id']}", headers={"Accept": "text/csv"}).text == response.text
    assert client.get(f"/v1/jobs/{job['id']}").headers["content-type"] == "application/json"
    missing = client.get("/v1/jobs/0123456789abcdef", params={"format": "csv"})
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/jobs/{job['id']}", params={"format": "xml"}).status_code == 422
    truth = _csv(client.get(f"/v1/jobs/{jobs['validation']['id']}", params={"format": "csv"}).text)
    accuracy = {g["model"]: g["accuracy"] for g in jobs["validation"]["ranking"]["ground_truth"]}
    assert {r["model"]: float(r["test_accuracy"]) for r in truth} == pytest.approx(accuracy)


def test_the_leaderboard_exports_as_csv(jobs):
    client = jobs["client"]
    for params in ({"dataset": "builtin:digits"}, {"dataset": "builtin:digits", "score": "logme"}):
        board = client.get("/v1/leaderboard", params=params).json()
        response = client.get("/v1/leaderboard", params={**params, "format": "csv"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = _csv(response.text)
        assert [(int(r["rank"]), r["model"], r["job_id"]) for r in rows] == [
            (row["rank"], row["model"], row["job_id"]) for row in board["data"]
        ]
        assert [_number(r["value"]) for r in rows] == pytest.approx([row["value"] for row in board["data"]])
        assert {r["ranked_by"] for r in rows} == {params.get("score") or board["policy"]["name"]}
        assert {r["option_set"] for r in rows} == {board["option_set"]["key"]}
    by_accept = client.get(
        "/v1/leaderboard", params={"dataset": "builtin:digits"}, headers={"Accept": "text/csv"}
    )
    assert by_accept.headers["content-type"].startswith("text/csv")


def test_the_openapi_schema_declares_the_csv_answers(jobs):
    paths = jobs["client"].get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs/{job_id}", "/v1/leaderboard"):
        operation = paths[path]["get"]
        assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
        assert "format" in {p["name"] for p in operation["parameters"]}


def test_the_pages_link_to_the_csv(jobs):
    client, job = jobs["client"], jobs["a"]
    for page, expected in ((f"/jobs/{job['id']}", "zoorank-job-"), ("/", "zoorank-leaderboard-")):
        text = client.get(page).text
        link = re.search(r'<p id="export"><a href="([^"]+)"', text)
        assert link, page
        download = client.get(html.unescape(link.group(1)))
        assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
        assert expected in download.headers["content-disposition"]
        assert {r["model"] for r in _csv(download.text)} == set(MODELS)


def test_the_cli_prints_csv(jobs, tmp_path):
    client, job = jobs["client"], jobs["a"]
    expected = _csv(client.get(f"/v1/jobs/{job['id']}", params={"format": "csv"}).text)
    with serve_in_thread(client.app) as base:
        shown = runner.invoke(cli, ["jobs", "show", job["id"], "--csv", "--server", base])
        assert shown.exit_code == 0, shown.output
        assert _csv(shown.stdout) == expected
        board = runner.invoke(cli, ["leaderboard", "--dataset", "builtin:digits", "--csv", "--server", base])
        assert board.exit_code == 0 and {r["model"] for r in _csv(board.stdout)} == set(MODELS)
        table = runner.invoke(cli, ["leaderboard", "--dataset", "builtin:digits", "--server", base])
        assert table.exit_code == 0 and all(m in table.stdout for m in MODELS) and "ranked by" in table.stdout
        unknown = runner.invoke(cli, ["leaderboard", "--dataset", "builtin:nope", "--csv", "--server", base])
        assert unknown.exit_code == 2 and "unknown builtin dataset" in unknown.output
    ranked = runner.invoke(
        cli,
        [
            "rank",
            "--dataset",
            "builtin:digits",
            "--models",
            MODELS[1],
            "--scores",
            "logme",
            "--samples-per-class",
            "5",
            "--input-size",
            "32",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--csv",
        ],
    )
    assert ranked.exit_code == 0, ranked.output
    rows = _csv(ranked.stdout)
    assert [(r["rank"], r["model"], r["status"]) for r in rows] == [("1", MODELS[1], "succeeded")]
    assert _number(rows[0]["logme"]) is not None
    both = runner.invoke(cli, ["rank", "--dataset", "builtin:digits", "--csv", "--json"])
    assert both.exit_code == 2 and "--csv" in both.output


# -- compare ---------------------------------------------------------------------------------


def test_two_jobs_compared_side_by_side(jobs):
    client, a, b = jobs["client"], jobs["a"], jobs["b"]
    response = client.get("/v1/compare", params={"a": a["id"], "b": b["id"]})
    assert response.status_code == 200, response.text
    c = response.json()
    assert (c["a"]["id"], c["b"]["id"]) == (a["id"], b["id"])
    differs = {d["option"]: (d["a"], d["b"]) for d in c["differences"]}
    assert differs["samples_per_class"] == (10, 8) and differs["scores"] == (["nce", "logme"], ["logme"])
    assert "models" not in differs and "dataset" not in differs  # the same models, in another order
    assert c["comparable"] is False and c["scores"] == ["nce", "logme"]
    assert c["a"]["by_mean_rank"] is (a["ranking"]["policy"]["method"] == "mean_rank")
    ranks = {side: {r["model"]: r for r in job["ranking"]["aggregate"]} for side, job in (("a", a), ("b", b))}
    values = {
        side: {(r["model"], r["score"]): r["value"] for r in job["results"]}
        for side, job in (("a", a), ("b", b))
    }
    assert sorted(m["model"] for m in c["models"]) == sorted(MODELS)
    assert [m["rank_a"] for m in c["models"]] == sorted(m["rank_a"] for m in c["models"])  # a's order
    for m in c["models"]:
        for side in ("a", "b"):
            assert m[f"rank_{side}"] == ranks[side][m["model"]]["rank"]
            assert m[f"aggregate_{side}"] == pytest.approx(ranks[side][m["model"]]["value"])
            assert m[f"status_{side}"] == "succeeded"
        assert m["rank_change"] == m["rank_a"] - m["rank_b"]
        assert m["scores"]["logme"]["a"] == pytest.approx(values["a"][(m["model"], "logme")])
        assert m["scores"]["logme"]["b"] == pytest.approx(values["b"][(m["model"], "logme")])
        assert m["scores"]["nce"]["b"] is None  # b did not compute it
    itself = client.get("/v1/compare", params={"a": a["id"], "b": a["id"][:8]}).json()
    assert itself["differences"] == [] and itself["comparable"] is True


def test_comparing_unknown_or_unfit_jobs_says_which(jobs):
    client, a = jobs["client"], jobs["a"]["id"]
    missing = client.get("/v1/compare", params={"a": a, "b": "0123456789abcdef"})
    assert missing.status_code == 404 and missing.json()["field"] == "b"
    assert "no job with id 0123456789abcdef" in missing.json()["detail"]
    validation = client.get("/v1/compare", params={"a": jobs["validation"]["id"], "b": a})
    assert validation.status_code == 422 and validation.json()["field"] == "a"
    assert "validation job" in validation.json()["detail"]
    assert client.get("/v1/compare", params={"a": a}).status_code == 422
    assert client.get("/v1/compare", params={"a": a, "b": "../etc"}).status_code == 422
    page = client.get("/compare", params={"a": a, "b": "0123456789abcdef"}, headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no job with id 0123456789abcdef" in page.text


def test_the_compare_page_and_the_form_that_leads_to_it(jobs):
    client, a, b = jobs["client"], jobs["a"], jobs["b"]
    job_page = client.get(f"/jobs/{a['id']}").text
    form = job_page[
        job_page.index('<form id="compare"') : job_page.index("</form>", job_page.index('id="compare"'))
    ]
    assert f'name="a" value="{a["id"]}"' in form and f'<option value="{b["id"]}">' in form
    assert jobs["validation"]["id"] not in form  # only rankings are offered
    page = client.get("/compare", params={"a": a["id"], "b": b["id"]})
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert f"Job {a['id'][:8]} against job {b['id'][:8]}" in text
    differences = text[
        text.index('id="differences"') : text.index("</table>", text.index('id="differences"'))
    ]
    assert "samples per class</td><td>10</td><td>8</td>" in differences
    ranks = text[text.index('id="compare-ranks"') :]
    for row in a["ranking"]["aggregate"]:
        assert re.search(
            rf'<tr data-model="{re.escape(row["model"])}"><td>[^<]+</td><td class="num">{row["rank"]}<', ranks
        )
    # a mean-rank policy's aggregate is shown as the job page shows it: the mean rank
    assert a["ranking"]["policy"]["method"] == "mean_rank" and "mean rank in a</th>" in ranks
    top = a["ranking"]["aggregate"][0]
    assert f'<td class="num">{-top["value"]:.3g}</td>' in ranks[ranks.index(f'data-model="{top["model"]}"') :]
    scores = text[text.index('id="compare-scores"') :]
    logme_b = next(r["value"] for r in b["results"] if r["score"] == "logme")
    assert f"{logme_b:.4g}" in scores
    assert f"/compare?a={b['id']}&b={a['id']}" in text  # swap


# -- progress --------------------------------------------------------------------------------


def test_a_job_shows_its_overall_progress(jobs, tmp_path):
    a = jobs["a"]
    assert a["overall"] | {"elapsed_seconds": None} == {
        "done": 2,
        "total": 2,
        "unit": "models",
        "fraction": 1.0,
        "elapsed_seconds": None,
        "eta_seconds": 0.0,
        "text": "2 of 2 models done",
    }
    assert a["overall"]["elapsed_seconds"] > 0
    queued = inline_client(Settings(var_dir=tmp_path / "var", sweep_interval=0), run_jobs=False)
    accepted = queued.post("/v1/jobs", json=A).json()
    assert accepted["overall"]["text"] == "0 of 2 models done; ETA after the first finishes"
    assert queued.get("/v1/jobs").json()["data"][0]["overall"] is None  # the list stays light
    page = queued.get(f"/jobs/{accepted['id']}").text
    overall = page[page.index('<p id="overall">') :]
    assert '<progress id="overall-bar" max="1" value="0.0">' in overall
    assert "0 of 2 models done; ETA after the first finishes" in overall[: overall.index("</p>")]


def test_a_validation_shows_its_steps_as_they_happen(jobs):
    first, second = MODELS
    seen = [(s["event"], s["models"], s["overall"]["done"]) for s in jobs["steps"]]
    assert seen == [
        (f"score {first}", [(first, "running", 0, 2), (second, "queued", 0, 2)], 0),
        (f"score {second}", [(first, "queued", 1, 2), (second, "running", 0, 2)], 1),
        (f"train {first}", [(first, "running", 1, 2), (second, "queued", 1, 2)], 2),
        (f"trained {first}", [(first, "succeeded", 2, 2), (second, "queued", 1, 2)], 3),
        (f"train {second}", [(first, "succeeded", 2, 2), (second, "running", 1, 2)], 3),
        (f"trained {second}", [(first, "succeeded", 2, 2), (second, "succeeded", 2, 2)], 4),
    ]
    assert {s["overall"]["unit"] for s in jobs["steps"]} == {"steps"}
    assert {s["overall"]["total"] for s in jobs["steps"]} == {4}
    # the ETA is known once a step has finished, and not before
    assert jobs["steps"][0]["overall"]["eta_seconds"] is None
    assert all(s["overall"]["eta_seconds"] is not None for s in jobs["steps"][1:])
    page = jobs["client"].get(f"/jobs/{jobs['validation']['id']}").text
    assert f"<h1>Validation {jobs['validation']['id'][:8]}" in page
    assert 'id="validation-note">A validation job' in page
    progress = page[page.index('<table id="progress">') : page.index("</table>", page.index('id="progress"'))]
    assert "steps done" in progress and "images/s" not in progress
    assert "2/2" in progress


# -- datasets --------------------------------------------------------------------------------


def test_datasets_show_their_classes_and_images_per_class(jobs):
    from sklearn.datasets import load_digits

    client = jobs["client"]
    png = encode_png(np.full((8, 8, 3), 200, np.uint8))
    archive = zip_archive(
        {**{f"cat/{i}.png": png for i in range(3)}, **{f"dog/{i}.png": png for i in range(2)}}
    )
    uploaded = client.post("/v1/datasets", files={"file": ("pets.zip", archive)}, data={"name": "pets"})
    assert uploaded.status_code in (200, 201), uploaded.text
    listed = {d["ref"]: d for d in client.get("/v1/datasets").json()["data"]}
    digits = listed["builtin:digits"]
    expected = np.bincount(load_digits().target).tolist()
    assert digits["class_names"] == [str(i) for i in range(10)] and digits["class_images"] == expected
    assert digits["images"] == sum(expected) == 1797
    assert listed["builtin:fashion-mnist"]["class_names"][:2] == ["t-shirt", "trouser"]
    pets = listed[uploaded.json()["ref"]]
    assert (pets["class_names"], pets["class_images"], pets["images"]) == (["cat", "dog"], [3, 2], 5)
    page = client.get("/datasets").text
    assert '<th scope="col">images per class</th>' in page
    row = page[
        page.index("<code>builtin:digits</code>") : page.index(
            "</tr>", page.index("<code>builtin:digits</code>")
        )
    ]
    assert '<span class="nowrap">0: 178</span>' in row and '<span class="nowrap">9: 180</span>' in row
    assert '<span class="nowrap">cat: 3</span>, <span class="nowrap">dog: 2</span>' in page
