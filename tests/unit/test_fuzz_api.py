"""Schemathesis against the API's own OpenAPI schema at a size that fits CI (issue 13 §3): every
operation, no 5xx, every answer as the schema says. The full-size run (and its report) is
``python -m benchmarks.fuzz_api``; both run :func:`benchmarks.fuzz_api.fuzz`."""

from __future__ import annotations

from benchmarks.fuzz_api import fuzz, fuzz_app, seed_state

EXAMPLES = 12  # per operation and mode: about 300 cases


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
