"""Schemathesis against the API's own OpenAPI schema at a size that fits CI (issue 13 §3): every
operation, no 5xx, every answer as the schema says. The full-size run (and its report) is
``python -m benchmarks.fuzz_api``; both run :func:`benchmarks.fuzz_api.fuzz`."""

from __future__ import annotations

import pytest
from zoorank_bench.fuzz_api import fuzz, fuzz_app, seed_state

EXAMPLES = 12  # per operation and mode: about 300 cases


@pytest.mark.slow  # ~10 s on 2 cores
def test_every_operation_answers_as_its_schema_says(tmp_path):
    app = fuzz_app(tmp_path / "var")
    report = fuzz(app, examples=EXAMPLES, seed=0, known=seed_state(app))
    operations = {
        f"{method.upper()} {path}" for path, item in app.openapi()["paths"].items() for method in item
    }
    assert set(report.cases) == operations and all(report.cases.values())
    assert report.total >= 250 and {"positive", "negative", "informed"} <= set(report.by_mode)
    # the informed requests got past the first checks: something was created and found
    assert {202, 200} <= set(report.statuses["POST /v1/jobs"]) | set(report.statuses["GET /v1/jobs/{job_id}"])
    assert 201 in report.statuses["POST /v1/datasets"]
    assert not report.findings, "\n\n".join(
        f"{f.operation} ({f.mode}) answered {f.status}: {f.title}\n{f.message}\n{f.curl}"
        for f in report.findings
    )


def test_what_the_fuzzer_found_stays_fixed(tmp_path):
    """Each was a 500 or a schema mismatch; the request schemathesis found, answered right."""
    from fastapi.testclient import TestClient

    client = TestClient(fuzz_app(tmp_path / "var"))
    # OverflowError from SQLite: a 500
    response = client.get("/v1/jobs", params={"offset": 2**80})
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    # a model named twice in a validation: the job's model rows collided, a 500
    twice = {"dataset": "builtin:digits", "models": ["mobilenetv2_100@random"] * 2, "mode": "finetune"}
    created = client.post("/v1/validations", json=twice)
    assert created.status_code == 202, created.text
    assert created.json()["models"] == ["mobilenetv2_100@random"]
    # naive datetimes from SQLite: not an RFC 3339 date-time
    assert created.json()["created_at"].endswith("Z")
    assert client.get(f"/v1/validations/{created.json()['id']}").json()["created_at"].endswith("Z")
    # undocumented answers: problem+json for every 4xx, the 503 of /readyz, /metrics as text
    schema = client.get("/openapi.json").json()
    jobs = schema["paths"]["/v1/jobs/{job_id}"]
    # every route: what app.access may answer (a key required, a body too large, too many)
    assert set(jobs["delete"]["responses"]) == {"200", "401", "404", "409", "413", "422", "429", "503"}
    # a job id that is a slash is no job, not a redirect to the job list
    assert client.get("/v1/jobs/%2F", follow_redirects=False).status_code == 404
    assert list(jobs["get"]["responses"]["404"]["content"]) == ["application/problem+json"]
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
