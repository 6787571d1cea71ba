"""The HTML pages in a real headless Chromium: the leaderboard after a job, and the job page."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from app import services
from app.main import create_app
from app.settings import Settings
from tests.service_harness import serve_in_thread

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (.ci/run installs it)")
def test_leaderboard_and_job_pages_render(tmp_path):
    settings = Settings(var_dir=tmp_path / "var")

    def inline(job_id: str, models: list[str]) -> list[str]:
        for model in models:
            services.run_model(settings, job_id, model)
        services.finalise_job(settings, job_id)
        return []

    application = create_app(settings, dispatch=inline, revoke=lambda ids: None)
    with serve_in_thread(application) as base:
        job = httpx.post(
            f"{base}/v1/jobs",
            timeout=300,
            json={
                "dataset": "builtin:digits",
                "models": ["mobilenetv2_100", "mobilenetv2_100@random"],
                "scores": ["logme", "knn"],
                "options": {"samples_per_class": 8, "input_size": 32},
            },
        ).json()
        dom = _chromium("--dump-dom", f"{base}/?dataset=builtin:digits&score=logme").stdout
        assert 'id="leaderboard"' in dom and "mobilenetv2_100@random" in dom and "<rect" in dom
        assert 'class="sort"' in dom and 'aria-sort="none"' in dom  # sort.js ran: headers are buttons
        assert job["id"][:8] in dom  # recent jobs table links the job
        job_dom = _chromium("--dump-dom", f"{base}/jobs/{job['id']}").stdout
        assert "succeeded" in job_dom and 'id="ranking"' in job_dom and 'id="scores"' in job_dom
        shot = tmp_path / "leaderboard.png"
        _chromium(f"--screenshot={shot}", "--window-size=1200,800", f"{base}/")
        assert shot.exists() and shot.stat().st_size > 5000
