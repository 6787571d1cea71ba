"""A browser that asks for a page gets an error page with a way back; a program (or any
/v1 path) gets the RFC 9457 problem document, whatever it accepts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)
    return TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/jobs/0123456789abcdef0123456789abcdef", 404, "no job with id"),
        ("/no/such/page", 404, "Not Found"),
        ("/?dataset=builtin:nope", 422, "unknown builtin dataset"),
    ],
)
def test_pages_answer_errors_as_pages_with_a_way_back(client, path, status, detail):
    page = client.get(path, headers=BROWSER)
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html"), page.text[:200]
    assert 'id="error-title"' in page.text and detail in page.text and 'id="back"' in page.text
    assert 'href="/"' in page.text
    plain = client.get(path)  # no Accept: text/html, e.g. curl: the problem document as before
    assert plain.status_code == status and plain.headers["content-type"] == "application/problem+json"


def test_the_api_answers_problem_json_even_to_a_browser(client):
    response = client.get("/v1/jobs/0123456789abcdef0123456789abcdef", headers=BROWSER)
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    refused = client.post("/v1/jobs", json={"dataset": "builtin:digits", "models": []}, headers=BROWSER)
    assert refused.status_code == 422 and refused.json()["field"] == "models"
