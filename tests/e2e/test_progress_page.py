"""A job page in headless Chromium follows the job's overall progress without reloading: the
bar and the "N of M ... done; ETA" line change as the worker writes its rows (here written
directly, as a validation's worker does), and the validation's table has no images/s cell for
the script to trip on."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient
from zoorank_app.db import crud
from zoorank_app.db.session import session_scope
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from tests.service_harness import serve_in_thread

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
MODELS = ["resnet10t@random", "test_resnet@random"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)")
def test_the_job_page_follows_the_overall_progress(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", sweep_interval=0)
    application = create_app(
        settings, dispatch=lambda job, models: [], revoke=lambda ids: None, dispatch_validation=lambda job: []
    )
    body = {"dataset": "builtin:digits", "models": MODELS, "scores": ["nce"], "mode": "linear", "seeds": [0]}
    job_id = TestClient(application).post("/v1/validations", json=body).json()["id"]
    with serve_in_thread(application) as base, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/jobs/{job_id}")
        assert page.inner_text("#overall-text") == "0 of 4 steps done; ETA after the first finishes"
        assert page.eval_on_selector("#overall-bar", "bar => bar.value") == 0
        with session_scope(settings.database_url) as session:  # the first model scored and trained
            crud.start_job(session, job_id)
            crud.set_model_status(session, job_id, MODELS[0], "running", images_done=1)
            crud.finish_model(session, job_id, MODELS[0], status="succeeded")
            crud.set_model_status(session, job_id, MODELS[1], "running", images_done=1)
        page.wait_for_function(
            "text => document.getElementById('overall-text').textContent.startsWith(text)",
            arg="3 of 4 steps done; about",
            timeout=10_000,
        )
        assert page.eval_on_selector("#overall-bar", "bar => bar.value") == pytest.approx(0.75)
        row = page.locator(f'#progress tr[data-model="{MODELS[1]}"]')
        assert row.locator('[data-field="images"]').inner_text() == "1/2"
        assert row.locator('[data-field="status"]').inner_text() == "running"
        browser.close()
    assert errors == []
