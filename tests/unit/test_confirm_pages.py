"""The confirmation stage on the pages: the job page's form, progress and answer (with the
learning curves drawn from the stored curves), and the confirmed pick on the leaderboard.

One tiny ranking and one tiny confirmation run once for the module (inline workers, SQLite),
the way the API runs them with Celery; the pages are then read as HTML.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from zoorank_app.charts import line_chart
from zoorank_app.db.models import Confirmation
from zoorank_app.db.session import session_scope
from zoorank_app.keys import hash_key
from zoorank_app.settings import Settings

from tests.service_harness import inline_client
from zoorank.confirm.request import DEFAULT_TOP_K

MODELS = ["resnet10t@random", "test_resnet@random"]
RANKING = {
    "dataset": "builtin:digits",
    "models": MODELS,
    "scores": ["nce"],
    "options": {"samples_per_class": 10, "input_size": 32},
}
CONFIRM = {"settings": {"epochs": 2, "train_per_class": 5, "val_per_class": 3}}
KEY = "zrk_unit-test-key-0123456789abcdefghij"


_app = inline_client


def _section(page: str, tag: str, id_: str) -> str:
    """The element ``<tag id="id_" ...>`` of ``page``, up to its closing tag (not nested)."""
    start = page.index(f'<{tag} id="{id_}"')
    return page[start : page.index(f"</{tag}>", start) + len(tag) + 3]


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("confirm-pages")
    settings = Settings(var_dir=tmp / "var", data_roots=[tmp / "data"], sweep_interval=0)
    client = _app(settings)
    job = client.post("/v1/jobs", json=RANKING).json()
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    response = client.post(f"/v1/jobs/{job['id']}/confirm", json=CONFIRM)
    assert response.status_code == 202, response.text
    confirmation = client.get(f"/v1/jobs/{job['id']}/confirm").json()
    assert confirmation["status"] == "succeeded", confirmation
    return {"settings": settings, "client": client, "job": job, "confirmation": confirmation}


def test_job_page_shows_the_answer_and_the_learning_curves(confirmed):
    client, job, c = confirmed["client"], confirmed["job"], confirmed["confirmation"]
    result = c["result"]
    page = client.get(f"/jobs/{job['id']}").text
    answer = _section(page, "div", "confirm-answer")
    text = html.unescape(answer)

    pick = _section(answer, "p", "confirm-pick")
    assert result["pick"] in pick and "95 % interval" in pick
    low, high = result["pick_interval"]
    assert f"{100 * low:.1f}–{100 * high:.1f} %" in html.unescape(pick)
    assert result["runner_up"] in _section(answer, "p", "confirm-runner-up")
    assert result["verdict"].rstrip(".") in text
    assert result["order_change"][1:] in text and result["rows"][1:] in text
    assert result["top_k_note"] in text  # top_k 5 of 2 models ranked

    # one table row per model, in confirmed order, with both positions, epochs and reason
    table = _section(answer, "table", "confirm-models")
    rows = re.findall(r'<tr data-model="([^"]+)">(.*?)</tr>', table, re.S)
    assert [m for m, _ in rows] == [m["model"] for m in result["models"]]
    assert sorted(m for m, _ in rows) == sorted(MODELS)
    for (_, cells), model in zip(rows, result["models"], strict=True):
        values = [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells)
        ]
        assert values[0] == str(model["confirmed_position"]) and values[2] == str(model["ranking_position"])
        assert values[3] == str(model["epochs"]) and values[-1] == model["reason"]

    # the learning curves: an SVG chart, one series per model (each point of its curve drawn),
    # the rungs' ends as dashed lines, every model in the legend
    figure = _section(answer, "figure", "learning-curves")
    assert figure.count("<svg") == 1 and 'role="img"' in figure
    series = re.findall(r'<g class="series" data-series="([^"]+)">(.*?)</g>', figure, re.S)
    assert [name for name, _ in series] == [m["model"] for m in result["models"]]
    for (_, drawn), model in zip(series, result["models"], strict=True):
        assert drawn.count("<polyline") == 1 and drawn.count("<circle") == len(model["curve"])
    assert figure.count('class="mark"') == len(c["plan"]["schedule"])
    assert all(f"rung {i} ends" in figure for i in range(1, len(c["plan"]["schedule"]) + 1))
    assert all(f">{m}</text>" in figure for m in MODELS)

    # finished: no progress, no cancel, and the form offered again
    assert 'id="confirm-progress"' not in page and 'id="confirm-cancel"' not in page
    assert '<form id="confirm-form">' in page


def test_confirm_form_defaults_and_api_key(confirmed):
    settings, job = confirmed["settings"], confirmed["job"]
    page = confirmed["client"].get(f"/jobs/{job['id']}").text
    form = _section(page, "form", "confirm-form")
    top_k = re.search(r'<input id="confirm-top-k"[^>]*>', form)
    assert top_k is not None and f'value="{min(DEFAULT_TOP_K, len(MODELS))}"' in top_k.group(0)
    assert (
        'name="budget"' in form and '<option value="images">' in form and '<option value="seconds">' in form
    )
    assert '<option value="ce">' in form and '<option value="powergrad">' in form
    assert 'value="dry_run">Dry run</button>' in form and 'value="confirm">Confirm</button>' in form
    assert 'name="api-key"' not in form  # no keys configured
    assert '/v1/jobs/" + id + "/confirm"' in page  # the form posts to the API

    keyed = Settings(**{**settings.model_dump(), "api_keys": [hash_key(KEY)]})
    page = _app(keyed).get(f"/jobs/{job['id']}").text
    form = _section(page, "form", "confirm-form")
    assert 'type="password" name="api-key"' in form and KEY not in page


def test_leaderboard_shows_the_confirmed_pick(confirmed):
    client, job, c = confirmed["client"], confirmed["job"], confirmed["confirmation"]
    board = client.get("/v1/leaderboard", params={"dataset": "builtin:digits"}).json()
    assert board["confirmed"][0]["pick"] == c["result"]["pick"]
    assert board["confirmed"][0]["job_id"] == job["id"]
    assert board["confirmed"][0]["val_interval"] == c["result"]["pick_interval"]
    index = client.get("/", params={"dataset": "builtin:digits"}).text
    shown = html.unescape(_section(index, "p", "confirmed-pick"))
    assert c["result"]["pick"] in shown and f'href="/jobs/{job["id"]}#confirm"' in shown
    assert f"{100 * c['result']['pick_val_accuracy']:.1f} %" in shown
    agrees = "agrees with" if c["result"]["agrees_with_ranking"] else "differs from"
    assert agrees in shown
    empty = client.get("/v1/leaderboard", params={"dataset": "builtin:digits", "score": "nce"}).json()
    assert empty["confirmed"] == board["confirmed"]  # per dataset, whatever the ranking shown


def test_running_confirmation_shows_progress_then_cancelled(confirmed):
    settings = confirmed["settings"]
    job = confirmed["client"].post("/v1/jobs", json=RANKING).json()
    stuck = _app(settings, run_units=False)  # no worker takes the units
    assert stuck.post(f"/v1/jobs/{job['id']}/confirm", json=CONFIRM).status_code == 202
    page = stuck.get(f"/jobs/{job['id']}").text
    section = _section(page, "section", "confirm")
    assert 'data-status="queued"' in section
    assert '<progress id="confirm-bar" max="1" value="0.0">' in section
    assert "waiting for a worker" in section and 'id="confirm-eta"' in section
    assert '<form id="confirm-cancel">' in section and '<form id="confirm-form">' not in section
    assert 'id="confirm-answer"' not in section

    assert stuck.post(f"/v1/jobs/{job['id']}/confirm/cancel").status_code == 200
    page = stuck.get(f"/jobs/{job['id']}").text
    assert 'id="confirm-cancelled"' in page and "was cancelled" in page
    assert '<form id="confirm-cancel">' not in page and '<form id="confirm-form">' in page

    with session_scope(settings.database_url) as session:  # as a confirmation with no pick ends
        row = session.query(Confirmation).filter_by(job_id=job["id"]).one()
        row.status, row.error = "failed", "every shortlisted model failed"
    page = stuck.get(f"/jobs/{job['id']}").text
    assert 'id="confirm-error"' in page and "every shortlisted model failed" in page


def test_no_confirm_form_before_the_ranking_finished(confirmed):
    queued = _app(confirmed["settings"], run_jobs=False)
    job = queued.post("/v1/jobs", json=RANKING).json()
    page = queued.get(f"/jobs/{job['id']}").text
    assert 'data-status="queued"' in page
    assert 'id="confirm-form"' not in page and 'id="confirm"' not in page


def test_line_chart_draws_series_with_gaps_and_marks():
    svg = line_chart(
        {"a": [(1, 0.2), (2, None), (3, 0.4), (4, 0.5)], "b": [(1, 0.1)], "c<d": []},
        title="t",
        x_label="epoch",
        y_label="acc",
        x_range=(0, 4),
        y_range=(0, 1),
        x_ticks=[0, 1, 2, 3, 4],
        marks=[(2, "rung 1 ends"), (4, "rung 2 ends")],
    )
    series = re.findall(r'<g class="series" data-series="([^"]+)">(.*?)</g>', svg)
    assert [name for name, _ in series] == ["a", "b", "c&lt;d"]
    assert [s.count("<polyline") for _, s in series] == [2, 1, 0]  # a breaks at its missing point
    assert [s.count("<circle") for _, s in series] == [3, 1, 0]
    assert svg.count('stroke-dasharray="5 4"') == 2 and "rung 2 ends" in svg
    assert "(2.00, missing)" in svg  # the text alternative says so
