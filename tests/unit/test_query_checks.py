"""Queries that name what does not exist are refused, not answered with an empty list
(issue 23): a job state and a dataset reference."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from zoorank_app.main import create_app
from zoorank_app.settings import Settings

from zoorank.states import TERMINAL, JobStatus


@pytest.fixture
def client(tmp_path):
    settings = Settings(var_dir=tmp_path / "var", data_roots=[tmp_path / "data"])
    return TestClient(create_app(settings, dispatch=lambda job_id, models: [], revoke=lambda ids: None))


def test_an_unknown_job_state_is_a_422_naming_the_states(client):
    response = client.get("/v1/jobs", params={"status": "bogus"})
    assert response.status_code == 422 and response.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert "queued" in response.text
    assert client.get("/v1/jobs", params={"status": "queued"}).status_code == 200
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["JobStatus"]["enum"]) == {s.value for s in JobStatus}


@pytest.mark.parametrize("dataset", ["builtin:nope", "nope", "zip:whatever"])
def test_a_leaderboard_of_a_dataset_that_cannot_exist_is_refused(client, dataset):
    response = client.get("/v1/leaderboard", params={"dataset": dataset})
    assert response.status_code in (404, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "dataset"


def test_a_known_dataset_without_results_is_an_empty_board(client):
    response = client.get("/v1/leaderboard", params={"dataset": "builtin:digits"})
    assert response.status_code == 200 and response.json()["data"] == []


def test_one_terminal_set():
    from zoorank_app.db import crud

    from zoorank.cli.remote import TERMINAL_STATUSES

    assert crud.TERMINAL == TERMINAL and set(TERMINAL_STATUSES) == set(TERMINAL)
    assert JobStatus.QUEUED not in TERMINAL and JobStatus.RUNNING not in TERMINAL


def test_a_unique_prefix_of_eight_characters_finds_its_job_everywhere(client):
    job_id = client.post(
        "/v1/jobs", json={"dataset": "builtin:digits", "models": ["resnet10t@random"]}
    ).json()["id"]
    short = job_id[:8]  # what the pages and the demo print
    found = client.get(f"/v1/jobs/{short}")
    assert found.status_code == 200 and found.json()["id"] == job_id  # was 404
    assert client.get(f"/jobs/{short}").status_code == 200
    assert client.get(f"/v1/jobs/{job_id[:7]}").status_code == 404  # too short to be an id
    assert client.get("/v1/jobs/zzzzzzzzzz").status_code == 404
    assert client.post(f"/v1/jobs/{short}/confirm", json={}).status_code == 409  # found: still queued


def test_demo_refuses_a_port_in_use_instead_of_talking_to_another_server(capsys):
    import socket

    from zoorank_app.service_runner import demo

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = demo(
            port=port,
            samples_per_class=5,
            input_size=32,
            scores=None,
            worker_argv=["false"],
            printer=lambda *a, **k: None,
        )
    assert code == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
