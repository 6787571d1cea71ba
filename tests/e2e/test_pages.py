"""The HTML pages in a real headless Chromium: the leaderboard after a job, and the job page.

The DOM Chromium built (after the pages' scripts ran) is parsed and held against the JSON API
the pages are a view of: one leaderboard row per model, in the API's order, with its value and
a bar as long as the value says; one ranking row and one score row per model on the job page;
the hidden-margin figure with one box per model whose described median is the stored one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx
import numpy as np
import pytest
from PIL import Image
from zoorank_app.main import create_app
from zoorank_app.services.runner import finalise_job, run_model
from zoorank_app.settings import Settings

from tests.service_harness import serve_in_thread

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MODELS = ["mobilenetv2_100", "mobilenetv2_100@random"]
SCORES = ["logme", "knn", "hidden_margin"]


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


# -- a small DOM from the stdlib parser --------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The node's text and its descendants', whitespace collapsed."""
        parts = list(self.text_parts)
        for child in self.children:
            parts.append(child.text())
        return " ".join(" ".join(parts).split())

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                found.append(child)
            found.extend(child.find_all(tag, **attrs))
        return found

    def find(self, tag: str, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}> in <{self.tag} {self.attrs}>"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):  # close up to the matching open tag
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text_parts.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def body_rows(table: Node) -> list[list[Node]]:
    """The table's rows that hold data cells (``td``), as lists of cells."""
    return [cells for row in table.find_all("tr") if (cells := row.find_all("td"))]


# -- the test ----------------------------------------------------------------------------------


def test_parser_reads_nested_tables_and_svg() -> None:
    dom = parse(
        '<table id="t"><tr><th>m</th></tr><tr><td>a<b>1</b></td><td><svg><rect width="5"/></svg>'
        "</td></tr><tr><td>b</td><td><br>2</td></tr></table><p>after</p>"
    )
    rows = body_rows(dom.find("table", id="t"))
    assert [[c.text() for c in r] for r in rows] == [["a 1", ""], ["b", "2"]]
    assert rows[0][1].find("rect").attrs["width"] == "5"
    assert dom.find("p").text() == "after"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)")
def test_leaderboard_and_job_pages_render(tmp_path):
    settings = Settings(var_dir=tmp_path / "var")

    def inline(job_id: str, models: list[str]) -> list[str]:
        for model in models:
            run_model(settings, job_id, model)
        finalise_job(settings, job_id)
        return []

    application = create_app(settings, dispatch=inline, revoke=lambda ids: None)
    with serve_in_thread(application) as base:
        job = httpx.post(
            f"{base}/v1/jobs",
            timeout=300,
            json={
                "dataset": "builtin:digits",
                "models": MODELS,
                "scores": SCORES,
                "options": {"samples_per_class": 8, "input_size": 32},
            },
        ).json()
        job = httpx.get(f"{base}/v1/jobs/{job['id']}", timeout=30).json()
        assert job["status"] == "succeeded", job
        board = httpx.get(
            f"{base}/v1/leaderboard", params={"dataset": "builtin:digits", "score": "logme"}, timeout=30
        ).json()
        dom = parse(_chromium("--dump-dom", f"{base}/?dataset=builtin:digits&score=logme").stdout)
        job_dom = parse(_chromium("--dump-dom", f"{base}/jobs/{job['id']}").stdout)
        shot = tmp_path / "leaderboard.png"
        _chromium(f"--screenshot={shot}", "--window-size=1200,800", f"{base}/?dataset=builtin:digits")

    # The leaderboard: one row per model, in the API's order, each with its value and a bar
    # whose length follows the value (the best logme gets the longest bar).
    leaderboard = dom.find("table", id="leaderboard")
    headers = leaderboard.find_all("th")
    assert [h.text() for h in headers[:3]] == ["#", "model", "value"]
    assert all(h.find_all("button", **{"class": "sort"}) for h in headers if "data-sort" in h.attrs)
    assert leaderboard.find("th").attrs.get("aria-sort") == "none"  # sort.js ran
    rows = body_rows(leaderboard)
    assert [r[1].text() for r in rows] == [entry["model"] for entry in board["data"]]
    assert sorted(r[1].text() for r in rows) == sorted(MODELS)
    assert [r[0].text() for r in rows] == ["1", "2"]
    for row, entry in zip(rows, board["data"], strict=True):
        assert float(row[2].text()) == pytest.approx(entry["value"], rel=1e-3)
        assert row[-1].find("a").attrs["href"] == f"/jobs/{job['id']}"
    bars = [float(r[3].find("svg").find("rect").attrs["width"]) for r in rows]
    assert bars == sorted(bars, reverse=True) and bars[0] > bars[-1]  # higher logme, longer bar
    recent = body_rows(dom.find("table", id="jobs"))
    assert [[c.text() for c in r[:3]] for r in recent] == [[job["id"][:8], "builtin:digits", "succeeded"]]

    # The job page: its status, one ranking row per model in the API's order, one score row
    # per model with every requested score's value.
    assert job_dom.find("span", id="job-status").text() == "succeeded"
    ranking = body_rows(job_dom.find("table", id="ranking"))
    assert [(r[0].text(), r[1].text()) for r in ranking] == [
        (str(entry["rank"]), entry["model"]) for entry in job["ranking"]["aggregate"]
    ]
    scores_table = job_dom.find("table", id="scores")
    assert [h.text() for h in scores_table.find_all("th")] == ["model", *job["scores"]]
    values = {(r["model"], r["score"]): r["value"] for r in job["results"]}
    score_rows = body_rows(scores_table)
    assert sorted(r[0].text() for r in score_rows) == sorted(MODELS)
    for row in score_rows:
        for score, cell in zip(job["scores"], row[1:], strict=True):
            assert float(cell.text()) == pytest.approx(values[(row[0].text(), score)], rel=1e-3)

    # The hidden-margin figure: an SVG chart with a text alternative, a legend naming each
    # model, one box per model, and the median its description gives is the stored one.
    charts = [f.find("svg") for f in job_dom.find_all("figure") if f.find_all("svg", role="img")]
    titles = [c.find("title").text() for c in charts]
    assert "Hidden margins of held-out samples" in titles, titles
    margins = charts[titles.index("Hidden margins of held-out samples")]
    legend = {t.text() for t in margins.find_all("text")}
    assert set(MODELS) <= legend
    boxes = [r for r in margins.find_all("rect") if r.attrs.get("fill-opacity")]
    assert len(boxes) == len(MODELS) and all(float(b.attrs["height"]) >= 1.0 for b in boxes)
    description = margins.find("desc").text()
    details = {r["model"]: r["details"] for r in job["results"] if r["score"] == "hidden_margin"}
    for model in MODELS:
        found = re.search(rf"{re.escape(model)}: median (-?[0-9.]+)", description)
        assert found is not None, description
        stored = float(np.median(details[model]["nuances"]["margin"]))
        assert float(found.group(1)) == pytest.approx(stored, abs=1e-3)

    # The screenshot is the page at the asked size, not a blank or an error page.
    with Image.open(shot) as image:
        assert image.size == (1200, 800)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50, "the screenshot is nearly one colour"
