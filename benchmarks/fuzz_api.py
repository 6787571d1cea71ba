"""Schemathesis against the API's own OpenAPI schema (issue 13 §3): every operation, cases that
follow the schema and cases that break it, each answer checked for no 5xx and for conformance
to the schema (status code, content type, body, headers).

    python -m benchmarks.fuzz_api [--examples 600] [--seed 0]

The app is ``create_app`` on a fresh SQLite database under a temporary ``ZOORANK_VAR_DIR``,
with a dispatch that queues nothing. Writes ``benchmarks/results/fuzz_api.{json,md}``: cases per
operation (and the statuses they got), failures found, the commit. ``tests/unit/test_fuzz_api``
runs :func:`fuzz` at a size that fits CI.

One schemathesis check is left out: ``positive_data_acceptance`` expects every request that
fits the schema to succeed, but the schema cannot say which dataset references, model names
or scores exist, so a well-formed ``{"dataset": "builtin:xyz"}`` is rightly a 422.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zoorank.settings import enter_offline_by_default

# Checks a failure of which is a finding; every other default schemathesis check runs.
EXCLUDED_CHECKS = ("positive_data_acceptance",)


# What earlier runs found, and what became of it (the closing note of issue 13 §3).
HISTORY = [
    (
        "`GET /v1/jobs?offset=2^80`",
        "500 (OverflowError: SQLite integers end at 2^63)",
        "fixed: offset <= 2^62, else 422",
    ),
    (
        "`POST /v1/validations` naming a model twice",
        "500 (the job's model rows collided: IntegrityError)",
        "fixed: a model named twice runs once",
    ),
    (
        "every job and leaderboard answer on SQLite",
        "`created_at` etc. without an offset: not an RFC 3339 `date-time`",
        "fixed: answered in UTC with the offset",
    ),
    (
        "every 4xx",
        "`application/problem+json` and 400/401/404/409/413/503 undocumented (FastAPI's default 422 "
        "schema instead)",
        "fixed: each route declares the problem responses it can return (`app.problems.Problem`)",
    ),
    ("`GET /readyz` not ready, `GET /metrics`", "503 and `text/plain` undocumented", "fixed: declared"),
    (
        "`GET` and `DELETE /v1/jobs/%2F`, `GET /v1/validations/%2F` (a job id `/`)",
        "Starlette decodes `%2F`, then redirects `/v1/jobs//` to the job list (200 of another schema; "
        "405 for DELETE)",
        "fixed: `redirect_slashes=False` on the app (`app.main.create_app`): a 404",
    ),
]


@dataclass
class Finding:
    """One distinct failure: an operation, the generation mode, what schemathesis said."""

    operation: str
    mode: str
    status: int | None
    title: str
    message: str
    curl: str = ""


@dataclass
class FuzzReport:
    cases: collections.Counter[str] = field(default_factory=collections.Counter)
    by_mode: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: dict[str, collections.Counter[int]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def record(self, finding: Finding) -> None:
        key = (finding.operation, finding.status, finding.title)
        if all((f.operation, f.status, f.title) != key for f in self.findings):
            self.findings.append(finding)


def fuzz(app: Any, *, examples: int, seed: int = 0, known: Known | None = None) -> FuzzReport:
    """Run up to ``examples`` generated cases per operation and mode against the ASGI ``app``:
    schemathesis' schema-valid (``positive``) and schema-breaking (``negative``) requests, and
    with ``known`` (:func:`seed_state`), ``informed`` ones that mix values the service knows
    (datasets, models, jobs, weight files, archives) with junk, to get past the first check.
    Every failure is recorded; the run does not stop at the first."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.core.result import Ok
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi import checks

    excluded = [getattr(checks, name) for name in EXCLUDED_CHECKS]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()

    def check(case: Any, label: str, mode: str) -> None:
        report.cases[label] += 1
        report.by_mode[mode] += 1
        try:
            response = case.call()
        except Exception as exc:  # the app raised instead of answering: a 500 to a client
            title = f"unhandled {type(exc).__name__}"
            report.record(Finding(label, mode, 500, title, str(exc), case.as_curl_command()))
            report.statuses[label][500] += 1
            return
        report.statuses[label][response.status_code] += 1
        try:
            case.validate_response(response, excluded_checks=excluded)
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else (exc,):
                title = f"{failure.code} {failure.title}"
                curl = case.as_curl_command()
                report.record(Finding(label, mode, response.status_code, title, failure.message, curl))

    def run(strategy: Any, label: str, mode: str) -> None:
        def one_case(case: Any) -> None:
            check(case, label, mode)

        test = given(case=strategy)(one_case)
        test = hypothesis_settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are recorded
            suppress_health_check=list(HealthCheck),
        )(test)
        # Unsatisfiable: nothing breaks this operation's schema (no parameters, or a free string
        # in the path), so it has no negative cases.
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            hypothesis.seed(seed)(test)()

    began = time.perf_counter()
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise RuntimeError(f"the API's schema has an operation schemathesis cannot read: {result.err()}")
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        report.statuses[label] = collections.Counter()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation.as_strategy(generation_mode=mode), label, mode.value)
        if known is not None and label in (informed := informed_requests(known)):
            run(informed[label].map(lambda kwargs, op=operation: op.Case(**kwargs)), label, "informed")
    report.seconds = time.perf_counter() - began
    return report


@dataclass
class Known:
    """What :func:`seed_state` put in the service, for informed requests."""

    datasets: list[str]
    models: list[str]
    weights: list[str]
    jobs: list[str]
    validations: list[str]
    option_sets: list[str]
    archives: list[bytes]


def seed_state(app: Any) -> Known:
    """Give the service something to find, through its own API: a folder, an npz and an
    uploaded dataset, weight files (a good one, one of the wrong shape, one carrying a pickle),
    a registered model, a succeeded job (run in-process, so the leaderboard has rows), a
    cancelled and a queued job, a queued validation."""
    import io
    import tarfile
    import zipfile

    import numpy as np
    import timm
    import torch
    from fastapi.testclient import TestClient
    from safetensors.torch import save_file
    from zoorank_app import services

    from zoorank.data.datasets import encode_png

    settings = app.state.settings
    root = Path(settings.data_roots[0])
    rng = np.random.default_rng(0)
    pngs = {
        f"{c}/{i}.png": encode_png(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        for c in "ab"
        for i in range(6)
    }
    for name, data in pngs.items():
        (root / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "set" / name).write_bytes(data)
    np.savez(root / "set.npz", x=rng.integers(0, 255, (12, 8, 8), dtype=np.uint8), y=np.repeat([0, 1], 6))
    save_file(timm.create_model("test_resnet").state_dict(), str(root / "test_resnet.safetensors"))
    save_file({"w": torch.ones(2)}, str(root / "short.safetensors"))
    torch.save({"state_dict": {"x": torch.ones(1)}, "code": Known}, root / "evil.pth")  # a pickled class

    def archive(entries: dict[str, bytes], kind: str = "zip") -> bytes:
        buffer = io.BytesIO()
        if kind == "zip":
            with zipfile.ZipFile(buffer, "w") as zf:
                for name, data in entries.items():
                    zf.writestr(name, data)
        else:
            with tarfile.open(fileobj=buffer, mode="w") as tf:
                link = tarfile.TarInfo("a/link.png")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tf.addfile(link)
        return buffer.getvalue()

    good = archive({f"set/{name}": data for name, data in pngs.items()})
    damaged = bytearray(good)
    damaged[len(damaged) // 3] ^= 0xFF
    archives = [
        good,
        archive({"../../x/1.png": pngs["a/0.png"], "a/1.png": pngs["a/1.png"]}),
        archive({"a/1.png": b"not a png", "b/1.png": b"x"}),
        archive({"a/1.png": b"0" * 5_000_000, "b/1.png": b"0" * 5_000_000}),
        archive({}, kind="tar"),
        bytes(damaged),
        b"plain text",
    ]

    client = TestClient(app)

    def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = client.request(method, path, **kwargs)
        if response.status_code != status:
            raise RuntimeError(f"seeding: {method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    upload = call("POST", "/v1/datasets", 201, files={"file": ("set.zip", good)})["ref"]
    weights = f"file:{root / 'test_resnet.safetensors'}"
    call(
        "POST",
        "/v1/models",
        201,
        json={"name": "fuzz-resnet", "architecture": "test_resnet", "weights": weights},
    )
    job = {
        "dataset": "builtin:digits",
        "models": ["fuzz-resnet"],
        "scores": ["logme"],
        "options": {"samples_per_class": 5, "input_size": 32, "tap_images_per_class": 0},
    }
    done, cancelled, queued = (call("POST", "/v1/jobs", 202, json=job)["id"] for _ in range(3))
    services.run_model(settings, done, "fuzz-resnet")
    services.finalise_job(settings, done)
    call("DELETE", f"/v1/jobs/{cancelled}", 200)
    validation = call(
        "POST", "/v1/validations", 202, json={"dataset": "builtin:digits", "models": ["fuzz-resnet"]}
    )["id"]
    board = call("GET", "/v1/leaderboard", 200, params={"dataset": "builtin:digits"})
    return Known(
        datasets=[
            "builtin:digits",
            upload,
            f"folder:{root / 'set'}",
            f"npz:{root / 'set.npz'}",
            "folder:/etc",
            "npz:../set.npz",
        ],
        models=[
            "fuzz-resnet",
            "mobilenetv2_100",
            "mobilenetv2_100@random",
            "test_resnet@random",
            "resnet18@timm",
        ],
        weights=[
            weights,
            f"file:{root / 'short.safetensors'}",
            f"file:{root / 'evil.pth'}",
            f"file:{root / 'missing.pth'}",
            f"file:{root / 'set.npz'}.pth",
            "file:/etc/passwd.pth",
            "random",
            "offline",
            "timm",
        ],
        jobs=[done, cancelled, queued],
        validations=[validation],
        option_sets=[s["key"] for s in board["option_sets"]],
        archives=archives,
    )


def informed_requests(known: Known) -> dict[str, Any]:
    """Per operation, a strategy of ``Case`` arguments: known values and junk, mixed."""
    from hypothesis import strategies as st

    from zoorank.rank import RankOptions
    from zoorank.scores import list_scores
    from zoorank.validate.groundtruth import TrainSettings

    junk = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    )

    def mix(good: list[Any], other: Any = junk) -> Any:
        return st.sampled_from(good) | other

    def names(good: list[str]) -> Any:
        return st.none() | st.lists(mix(good, st.text(max_size=20)), max_size=3)

    def options(fields: list[str], values: Any) -> Any:
        return st.none() | st.dictionaries(mix(fields, st.text(max_size=8)), values | junk, max_size=4)

    scores = list_scores()
    number = st.integers(-2, 300) | st.integers() | st.floats(-1.0, 2.0)
    score_params = st.dictionaries(
        mix(scores, st.text(max_size=8)), st.dictionaries(st.text(max_size=8), junk, max_size=2), max_size=1
    )
    datasets = mix(known.datasets, st.text(max_size=40))
    # as a client sends a path segment: percent-encoded ('?', '#', '/' included)
    jobs = mix(
        known.jobs + known.validations, st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe=""))
    )
    job_body = st.fixed_dictionaries(
        {"dataset": datasets},
        optional={
            "models": names(known.models),
            "scores": names(scores),
            "options": options(
                list(RankOptions.__dataclass_fields__),
                number | st.sampled_from(["cpu", "auto"]) | score_params,
            ),
        },
    )
    validation_body = st.fixed_dictionaries(
        {"dataset": datasets},
        optional={
            "models": names(known.models),
            "scores": names(scores),
            "mode": mix(["linear", "finetune"]),
            "loss": mix(["ce", "powergrad"]),
            "alpha": number | junk,
            "seeds": st.lists(st.integers(-3, 20), max_size=12) | junk,
            "settings": options(
                list(TrainSettings.__dataclass_fields__), number | st.sampled_from(["sgd", "adam", "cpu"])
            ),
        },
    )
    model_body = st.fixed_dictionaries(
        {
            "name": mix(["fuzz-resnet", "mobilenetv2_100"], st.from_regex(r"\A[A-Za-z0-9_.@:-]{1,30}\Z")),
            "architecture": mix(["test_resnet", "resnet10t", "mobilenetv2_100"], st.text(max_size=20)),
            "weights": mix(known.weights, st.text(max_size=30)),
        },
        optional={"imagenet_top1": number | junk, "description": st.text(max_size=30) | junk},
    )
    upload = st.fixed_dictionaries(
        {"file": st.sampled_from(known.archives) | st.binary(max_size=200)},
        optional={"name": st.text(max_size=20)},
    )
    return {
        "POST /v1/jobs": st.builds(dict, body=job_body, media_type=st.just("application/json")),
        "POST /v1/validations": st.builds(dict, body=validation_body, media_type=st.just("application/json")),
        "POST /v1/models": st.builds(dict, body=model_body, media_type=st.just("application/json")),
        "POST /v1/datasets": st.builds(dict, body=upload, media_type=st.just("multipart/form-data")),
        "GET /v1/jobs": st.builds(
            dict,
            query=st.fixed_dictionaries(
                {},
                optional={
                    "offset": st.integers(-1, 2**70),
                    "limit": st.integers(-1, 300),
                    "status": mix(
                        ["queued", "running", "succeeded", "cancelled", "failed"], st.text(max_size=10)
                    ),
                },
            ),
        ),
        "GET /v1/jobs/{job_id}": st.builds(dict, path_parameters=st.fixed_dictionaries({"job_id": jobs})),
        "DELETE /v1/jobs/{job_id}": st.builds(dict, path_parameters=st.fixed_dictionaries({"job_id": jobs})),
        "GET /v1/validations/{job_id}": st.builds(
            dict, path_parameters=st.fixed_dictionaries({"job_id": jobs})
        ),
        "GET /v1/leaderboard": st.builds(
            dict,
            query=st.fixed_dictionaries(
                {"dataset": datasets},
                optional={
                    "score": mix(scores, st.text(max_size=10)),
                    "option_set": mix(known.option_sets, st.text(max_size=10)),
                },
            ),
        ),
    }


def fuzz_app(var_dir: Path) -> Any:
    """The API as the tests build it: SQLite under ``var_dir``, a dispatch that queues nothing,
    no sweeper, no rate limit (thousands of requests a minute from one client)."""
    from zoorank_app.main import create_app
    from zoorank_app.settings import Settings

    settings = Settings(var_dir=var_dir, data_roots=[var_dir / "data"], sweep_interval=0, rate_limit=0)
    return create_app(
        settings,
        dispatch=lambda job_id, models: [],
        revoke=lambda ids: None,
        dispatch_validation=lambda job_id: [],
    )


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(report: FuzzReport, *, examples: int, seed: int, out: Path) -> None:
    import hypothesis
    import schemathesis

    command = f"python -m benchmarks.fuzz_api --examples {examples} --seed {seed}"
    payload = {
        "command": command,
        "commit": _commit(),
        "schemathesis": schemathesis.__version__,
        "hypothesis": hypothesis.__version__,
        "examples_per_operation_and_mode": examples,
        "excluded_checks": list(EXCLUDED_CHECKS),
        "cases": dict(report.cases),
        "total_cases": report.total,
        "statuses": {op: {str(k): v for k, v in sorted(c.items())} for op, c in report.statuses.items()},
        "failures": [f.__dict__ for f in report.findings],
        "seconds": round(report.seconds, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz_api.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        "# Schemathesis against the API's own OpenAPI schema",
        "",
        f"`{command}` at commit {payload['commit']}: schemathesis {payload['schemathesis']}, "
        f"hypothesis {payload['hypothesis']}; up to {examples} cases per operation for schema-valid "
        "and for schema-breaking requests (operations with nothing to break get valid ones only); "
        f"every default check except {', '.join(EXCLUDED_CHECKS)} (see the module docstring). "
        f"**{report.total} cases in {report.seconds:.0f} s, {len(report.findings)} failures.**",
        "",
        "| operation | cases | statuses answered |",
        "|---|---:|---|",
    ]
    for op, count in report.cases.items():
        answered = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses[op].items()))
        lines.append(f"| `{op}` | {count} | {answered} |")
    lines += ["", "## Failures in this run", ""]
    if not report.findings:
        lines.append("None.")
    for finding in report.findings:
        lines += [
            f"* `{finding.operation}` ({finding.mode}) answered {finding.status}: {finding.title}",
            "",
            "  ```",
            *("  " + line for line in finding.message.splitlines()[:12]),
            f"  {finding.curl}",
            "  ```",
        ]
    lines += ["", "## Found by earlier runs", "", "| request | answered | now |", "|---|---|---|"]
    lines += [f"| {request} | {was} | {now} |" for request, was, now in HISTORY]
    (out / "fuzz_api.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    enter_offline_by_default()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=600, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    logging.getLogger("python_multipart").setLevel(logging.ERROR)  # one line per malformed form
    with tempfile.TemporaryDirectory(prefix="zoorank-fuzz-") as tmp:
        app = fuzz_app(Path(tmp) / "var")
        report = fuzz(app, examples=args.examples, seed=args.seed, known=seed_state(app))
    write_results(report, examples=args.examples, seed=args.seed, out=args.out)
    print(f"{report.total} cases, {len(report.findings)} failures in {report.seconds:.0f} s")
    for finding in report.findings:
        print(f"- {finding.operation} ({finding.mode}) {finding.status}: {finding.title}")


if __name__ == "__main__":
    main()
