"""A user's whole path through the pages, driven in headless Chromium (Playwright with the
machine's Chromium): upload a dataset through the form, a bad upload's message, start a job
from the form, watch it finish without reloading, read and sort the leaderboard, look at the
figures, cancel a second job. A screenshot of every page is saved (ZOORANK_E2E_ARTEFACTS, or
the test's temporary folder)."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from zoorank_app.main import create_app
from zoorank_app.services.runner import finalise_job, run_model
from zoorank_app.settings import Settings

from tests.service_harness import serve_in_thread
from zoorank.data.datasets import encode_png

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")


def _archive(folder: Path, entries: dict[str, bytes], name: str) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in entries.items():
            archive.writestr(member, data)
    path = folder / name
    path.write_bytes(buffer.getvalue())
    return path


def _images(rng: np.random.Generator, n: int, level: int) -> list[bytes]:
    return [
        encode_png(np.clip(rng.normal(level, 30, (16, 16, 3)), 0, 255).astype(np.uint8)) for _ in range(n)
    ]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)")
def test_upload_rank_watch_sort_and_cancel_in_a_browser(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)
    shots = Path(os.environ.get("ZOORANK_E2E_ARTEFACTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)

    def later(job_id: str, models: list[str]) -> list[str]:
        """A worker that starts 3 s after submission, so that the page has something to watch."""

        def work() -> None:
            time.sleep(3)
            for model in models:
                run_model(settings, job_id, model)
            finalise_job(settings, job_id)

        threading.Thread(target=work, daemon=True).start()
        return []

    rng = np.random.default_rng(0)
    good = _archive(
        tmp_path,
        {
            f"{cls}/{i}.png": png
            for cls, level in (("dark", 60), ("light", 190))
            for i, png in enumerate(_images(rng, 10, level))
        },
        "shades.zip",
    )
    evil = _archive(tmp_path, {"../escape/1.png": _images(rng, 1, 100)[0]}, "evil.zip")
    application = create_app(settings, dispatch=later, revoke=lambda ids: None)
    with serve_in_thread(application) as base, playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})

        # Upload through the form; then a bad upload says why on the page.
        page.goto(f"{base}/datasets")
        page.set_input_files("#file", str(good))
        page.fill("#name", "shades")
        page.click("#upload button[type=submit]")
        added = page.inner_text("#added")
        ref = added.split("Added ")[1].split(".")[0].strip()
        assert ref.startswith("upload:") and "shades" in page.content()
        page.screenshot(path=shots / "datasets-added.png", full_page=True)
        page.set_input_files("#file", str(evil))
        page.click("#upload button[type=submit]")
        assert "Upload refused" in page.inner_text("#error") and "path" in page.inner_text("#error")
        page.screenshot(path=shots / "datasets-refused.png", full_page=True)

        # Start a job from the form; the job page follows it to the end without a reload by us.
        page.goto(f"{base}/jobs/new?dataset={ref}")
        for model in ("mobilenetv2_100", "mobilenetv2_100@random"):
            page.check(f"input[name=models][value='{model}']")
        for box in page.query_selector_all("input[name=scores]"):
            box.uncheck()
        for score in ("logme", "hidden_margin", "betti_slope_norm"):
            page.check(f"input[name=scores][value='{score}']")
        page.fill("#samples_per_class", "8")
        page.fill("#input_size", "32")
        page.screenshot(path=shots / "new-job.png", full_page=True)
        page.click("#new-job button[type=submit]")
        assert "/jobs/" in page.url
        assert page.inner_text("#job-status") in ("queued", "running")
        page.wait_for_function(
            "(document.getElementById('job-status') || {}).textContent === 'succeeded'", timeout=180_000
        )
        page.wait_for_selector("#ranking")
        assert len(page.query_selector_all("#ranking tr")) == 3  # header + 2 models
        figures = page.query_selector_all("#figures ~ figure svg[role=img]")
        assert len(figures) == 3 and all(f.is_visible() for f in figures)  # profile, margins, nuances
        page.screenshot(path=shots / "job-succeeded.png", full_page=True)

        # The leaderboard of that dataset, sorted by model name.
        page.goto(f"{base}/?dataset={ref}")
        rows = page.query_selector_all("#leaderboard tr")
        assert len(rows) == 3
        page.click("#leaderboard th:nth-child(2) button.sort")
        assert page.get_attribute("#leaderboard th:nth-child(2)", "aria-sort") == "ascending"
        names = [r.inner_text() for r in page.query_selector_all("#leaderboard tr td:nth-child(2)")]
        assert names == sorted(names)
        page.screenshot(path=shots / "leaderboard.png", full_page=True)

        # A second job, cancelled from its page before its worker starts.
        page.goto(f"{base}/jobs/new?dataset={ref}")
        page.check("input[name=models][value='mobilenetv2_100']")
        page.click("#new-job button[type=submit]")
        page.click("#cancel button[type=submit]")
        # "Cancelled." shows, then the page reloads itself once the job has ended (the form
        # is gone then): wait for the ended page, whichever moment this check lands in.
        page.wait_for_function(
            "(document.getElementById('job-status') || {}).textContent === 'cancelled'"
            " && document.getElementById('cancel') === null",
            timeout=60_000,
        )
        page.screenshot(path=shots / "job-cancelled.png", full_page=True)

        for path in ("/models", "/scores", "/docs"):
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=shots / f"{path.strip('/')}.png", full_page=True)
        assert page.query_selector(".swagger-ui") is not None  # /docs rendered offline
        browser.close()
    assert len(list(shots.glob("*.png"))) == 9
