"""A browser that asks for a page gets an error page with a way back; a program (or any
/v1 path) gets the RFC 9457 problem document, whatever it accepts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

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


def test_switching_the_leaderboard_dataset_drops_an_option_set_it_does_not_have(tmp_path):
    from zoorank_app.services.runner import finalise_job, run_model

    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"], sweep_interval=0)

    def dispatch(job_id: str, models: list[str]) -> list[str]:
        for model in models:
            run_model(settings, job_id, model)
        finalise_job(settings, job_id)
        return []

    client = TestClient(create_app(settings, dispatch=dispatch, revoke=lambda ids: None))
    job = {"dataset": "builtin:digits", "models": ["resnet10t@random"], "scores": ["nce"]}
    assert client.post("/v1/jobs", json={**job, "options": {"samples_per_class": 5}}).status_code == 202
    # the form sends the option set it showed for the previous dataset
    page = client.get("/", params={"dataset": "builtin:digits", "option_set": "0123abcd"}, headers=BROWSER)
    assert page.status_code == 200, page.text[-300:]  # was a raw 422
    assert 'id="notice"' in page.text and "has no results on builtin:digits" in page.text
    assert "resnet10t@random" in page.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/v1/jobs", "GET, POST"),
        ("patch", "/v1/jobs/abc", "DELETE, GET"),
        ("delete", "/v1/scores", "GET"),
        ("put", "/v1/jobs/abc/confirm", "GET, POST"),
    ],
)
def test_405_names_every_method_the_path_serves(client, method, path, allowed):
    response = client.request(method.upper(), path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed  # Starlette named the first matching route's only
    for other in allowed.split(", "):  # and each one it names is served there
        assert client.request(other, path).status_code != 405
