"""Schemathesis against the API's own OpenAPI schema at a size that fits CI (issues 13 §3 and 23):
``schemathesis run --checks all`` (every phase, the stateful one included, and every check), no
failure. The full-size run (and its report) is ``python -m benchmarks.fuzz_api``; both run
:func:`benchmarks.fuzz_api.fuzz`."""

from __future__ import annotations

import pytest
from zoorank_bench.fuzz_api import ACCEPTED, accepted_reason, fuzz, fuzz_app, seed_state

EXAMPLES = 12  # per operation and phase


@pytest.mark.slow  # ~30 s on the 2 loaded cores
def test_every_operation_answers_as_its_schema_says(tmp_path):
    app = fuzz_app(tmp_path / "var")
    report = fuzz(app, examples=EXAMPLES, seed=0, known=seed_state(app))
    operations = {
        f"{method.upper()} {path}" for path, item in app.openapi()["paths"].items() for method in item
    }
    assert set(report.cases) == operations and all(report.cases.values())
    assert report.total >= 250
    assert {"examples", "coverage", "fuzzing", "stateful", "informed"} <= set(report.by_phase)
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()  # every registered check ran, the stateful ones and positive_data_acceptance too
    assert {c.__name__ for c in CHECKS.get_all()} <= set(report.checks)
    assert report.checks["use_after_free"] and report.checks["positive_data_acceptance"]
    # the informed requests got past the first checks: something was created and found
    assert {202, 200} <= set(report.statuses["POST /v1/jobs"]) | set(report.statuses["GET /v1/jobs/{job_id}"])
    assert 200 in report.statuses["POST /v1/datasets"]  # the seeded archive again: deduplicated
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
    # a negative seed reached numpy's generator at submission (ValueError): a 500
    ranking = {"dataset": "builtin:digits", "models": ["test_resnet@random"], "options": {"seed": -1}}
    response = client.post("/v1/jobs", json=ranking)
    assert response.status_code == 422 and response.json()["field"] == "options", response.text
    validation = {
        "dataset": "builtin:digits",
        "models": ["test_resnet@random"],
        "settings": {"split_seed": -1},
    }
    response = client.post("/v1/validations", json=validation)
    assert response.status_code == 422 and "split_seed" in response.json()["detail"], response.text
    # naive datetimes from SQLite: not an RFC 3339 date-time
    assert created.json()["created_at"].endswith("Z")
    assert client.get(f"/v1/validations/{created.json()['id']}").json()["created_at"].endswith("Z")
    # undocumented answers: problem+json for every 4xx, the 503 of /readyz, /metrics as text
    schema = client.get("/openapi.json").json()
    jobs = schema["paths"]["/v1/jobs/{job_id}"]
    # every route: what app.access may answer (a key required, a body too large, too many)
    assert set(jobs["delete"]["responses"]) == {"204", "401", "404", "413", "422", "429", "503"}
    # a job id that is a slash is no job, not a redirect to the job list
    assert client.get("/v1/jobs/%2F", follow_redirects=False).status_code == 404
    assert list(jobs["get"]["responses"]["404"]["content"]) == ["application/problem+json"]
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]
    # a dry run of a confirmation answers 200 (the plan), undocumented beside the 202
    assert {"200", "202"} <= set(schema["paths"]["/v1/jobs/{job_id}/confirm"]["post"]["responses"])
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def test_the_schema_says_what_the_validators_refuse(tmp_path):
    """Found by positive_data_acceptance (schema-valid, answered 422): each rule is in the schema
    now, and a refusal the schema can say is never accepted as the data's fault."""
    from fastapi.testclient import TestClient

    client = TestClient(fuzz_app(tmp_path / "var"))
    components = client.get("/openapi.json").json()["components"]["schemas"]
    validation = components["ValidationCreate"]
    assert (
        validation["properties"]["seeds"] | {"minItems": 1, "maxItems": 10, "uniqueItems": True}
        == (validation["properties"]["seeds"])
    )
    assert validation["properties"]["mode"]["enum"] == ["linear", "finetune"]
    assert "pattern" in validation["properties"]["dataset"] and "allOf" in validation
    job = components["JobCreate"]["properties"]
    assert job["scores"]["anyOf"][0]["minItems"] == 1 and job["models"]["anyOf"][0]["minItems"] == 1
    assert job["options"]["anyOf"][0]["additionalProperties"] is False
    assert components["JobConfirmCreate"]["properties"]["dry_run"]["const"] is False
    assert components["ModelCreate"]["properties"]["weights"]["pattern"].startswith("^(random|timm")
    refused = client.post("/v1/validations", json={"dataset": "builtin:digits", "seeds": []})
    assert refused.status_code == 422
    assert accepted_reason("positive_data_acceptance", "POST /v1/validations", refused) is None
    # JSON Schema's integer admits 8.0: so does the API (was: "options.samples_per_class must be an
    # integer, got 8.0")
    whole = {"samples_per_class": 8.0, "input_size": 32.0, "tap_images_per_class": 0}
    job = client.post(
        "/v1/jobs", json={"dataset": "builtin:digits", "models": ["test_resnet@random"], "options": whole}
    )
    assert job.status_code == 202, job.text
    assert job.json()["options"]["samples_per_class"] == 8 and job.json()["options"]["input_size"] == 32
    unknown = client.post("/v1/validations", json={"dataset": "builtin:nope"})
    assert accepted_reason("positive_data_acceptance", "POST /v1/validations", unknown) == ACCEPTED[0][4]
