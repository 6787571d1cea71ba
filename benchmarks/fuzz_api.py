"""Schemathesis against the API's own OpenAPI schema, as ``schemathesis run --checks all`` runs it
(issues 13 §3 and 23): every operation, every phase (the schema's examples, coverage, fuzzing and
the stateful phase, which chains operations by the links schemathesis infers), every check (the
stateful ``use_after_free`` and ``ensure_resource_availability`` and ``positive_data_acceptance``
included); then "informed" cases that mix what the service knows with junk.

    python -m benchmarks.fuzz_api [--examples 100] [--seed 0]

The app is ``create_app`` on a fresh SQLite database under a temporary ``ZOORANK_VAR_DIR``,
with a dispatch that queues nothing. Writes ``benchmarks/results/fuzz_api.{json,md}``: cases per
operation (and the statuses they got), failures found, failures accepted and why, the commit.
``tests/unit/test_fuzz_api`` runs :func:`fuzz` at a size that fits CI.

Accepted failures (:data:`ACCEPTED`, a schemathesis ``filter_failure`` hook): the schema says
what a request must look like, not what the service holds. A schema-valid request that names a
dataset, model, weight file, option set or job that does not exist (or a job in a state that
does not allow it), an archive whose content is not a dataset, or breaks a rule across two
fields or against the data, is refused with a 422 problem naming that field. Each accepted
refusal is listed with its reason and counted in the report; anything else is a failure.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import re
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zoorank.settings import enter_offline_by_default

CHECKS = ["all"]  # schemathesis run --checks all

# (check, operations, problem field, detail pattern, why): a failure of ``check`` at one of the
# operations, answered 422 with a problem whose field and detail match, is not the API's fault.
ACCEPTED: list[tuple[str, tuple[str, ...], str, str, str]] = [
    (
        "positive_data_acceptance",
        ("POST /v1/jobs", "POST /v1/validations", "GET /v1/leaderboard"),
        "dataset",
        r"unknown builtin dataset|does not exist|no uploaded dataset|outside the allowed data roots"
        r"|not a folder|no such|cannot be read|holds no|class .* has|needs at least|images? of each class"
        r"|have fewer than \d+ samples",
        "a well-formed dataset reference that names no dataset here, or data too small for the request",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/jobs", "POST /v1/validations", "POST /v1/models"),
        "models",
        r"unknown model|timm has no architecture|no offline weights|is not a timm model|ZOORANK_OFFLINE"
        r"|weight file|outside the allowed data roots|tensors, the model has|keys do not match",
        "a model name, architecture or weight source that is not in the zoo, timm or the data roots,"
        " or a weight file that does not fit the architecture",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/models",),
        "weights",
        r"weight file|outside the allowed data roots|does not exist|ZOORANK_OFFLINE",
        "a weight file or hub id that does not exist here",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/datasets",),
        "file",
        r".",
        "an archive's content (a zip or tar of CLASS/IMAGE files that decode) is not a schema's to say",
    ),
    (
        "positive_data_acceptance",
        ("GET /v1/leaderboard",),
        "option_set",
        r"no results on .* under option set",
        "an option-set key that no job on the dataset has",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/jobs/{job_id}/confirm",),
        "job",
        r"only a ranking can be confirmed",
        "the job named is a validation: the path's job is of the wrong kind",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/jobs", "POST /v1/jobs/{job_id}/confirm"),
        "budget",
        r"is below the minimum of",
        "the least budget is the cost of one epoch of the ranking's shortlist: it depends on the data",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/jobs",),
        "options",
        r"below min_samples_per_class",
        "samples_per_class against min_samples_per_class: a bound that is another field",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/jobs",),
        "params",
        r"parameter .* must be|input_size must be",
        "a score parameter's value: each score checks its own (GET /v1/scores); the schema names them",
    ),
    (
        "positive_data_acceptance",
        ("POST /v1/validations", "POST /v1/jobs", "POST /v1/jobs/{job_id}/confirm"),
        "settings",
        r"the split needs|class .* has",
        "a split larger than a class of the dataset",
    ),
    (
        "ensure_resource_availability",
        ("GET /v1/jobs/{job_id}/confirm",),
        "",
        r"has no confirmation",
        "a job's confirmation exists once POST /v1/jobs/{id}/confirm made one; until then 404 is the"
        " answer (schemathesis infers the link from the path alone)",
    ),
]
# A job deleted by DELETE /v1/jobs/{id} is gone from every path that names it (a validation is a
# job); schemathesis counts only a DELETE at the same path as the reason for a 404.
DELETED = "the job was deleted by DELETE /v1/jobs/{id} earlier in the scenario"


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
    (
        '`POST /v1/validations` with `"seeds": []` and four more operations (`--checks all`)',
        "schema-valid requests answered 422: the schema did not say the validators' rules",
        "fixed: the rules' minItems, ranges, patterns and enums are in the schema (`app.request_rules`)",
    ),
    (
        "`options.seed` or `settings.split_seed` below 0 (found once the schema typed them)",
        "500 (numpy's generator: expected non-negative integer)",
        "fixed: refused by RankOptions / TrainSettings (422), minimum 0 in the schema",
    ),
    (
        "`POST /v1/jobs/{id}/confirm` with `dry_run` on a finished ranking",
        "200 (the plan), undocumented beside the 202",
        "fixed: declared",
    ),
    ("405 answers", "no `Allow` header", "fixed: every method the schema documents at the path"),
    (
        "`DELETE /v1/jobs/{id}`",
        "cancelled the job, which was still there afterwards (use_after_free)",
        "fixed: `POST /v1/jobs/{id}/cancel` cancels; `DELETE` deletes (204, then 404)",
    ),
]


def accepted_reason(check: str, operation: str, response: Any, *, deleted: bool = False) -> str | None:
    """Why this failure is not the API's fault (an :data:`ACCEPTED` entry, or :data:`DELETED`
    for a 404 of a job that was deleted), or None."""
    if check == "ensure_resource_availability" and deleted and response.status_code == 404:
        return DELETED
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return None
    if not isinstance(body, dict):
        return None
    status = 404 if check == "ensure_resource_availability" else 422
    if response.status_code != status:
        return None
    for name, operations, problem_field, detail, why in ACCEPTED:
        if (
            name == check
            and operation in operations
            and (body.get("field") or "") == problem_field
            and re.search(detail, str(body.get("detail", "")))
        ):
            return why
    return None


@dataclass
class Finding:
    """One distinct failure: an operation, the phase, what schemathesis said."""

    operation: str
    mode: str
    status: int | None
    title: str
    message: str
    curl: str = ""


@dataclass
class FuzzReport:
    cases: collections.Counter[str] = field(default_factory=collections.Counter)
    by_phase: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: dict[str, collections.Counter[int]] = field(default_factory=dict)
    checks: collections.Counter[str] = field(default_factory=collections.Counter)  # check -> runs
    findings: list[Finding] = field(default_factory=list)
    accepted: collections.Counter[tuple[str, str, str]] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def record(self, finding: Finding) -> None:
        key = (finding.operation, finding.status, finding.title)
        if all((f.operation, f.status, f.title) != key for f in self.findings):
            self.findings.append(finding)

    def count(self, label: str, phase: str, status: int | None) -> None:
        self.cases[label] += 1
        self.by_phase[phase] += 1
        self.statuses.setdefault(label, collections.Counter())[status if status is not None else 0] += 1


def fuzz(app: Any, *, examples: int, seed: int = 0, known: Known | None = None) -> FuzzReport:
    """``schemathesis run --checks all`` against the ASGI ``app`` (every phase, up to ``examples``
    cases per operation and phase), then, with ``known`` (:func:`seed_state`), up to
    ``examples`` ``informed`` cases per operation that mix values the service knows (datasets,
    models, jobs, weight files, archives) with junk, to get past the first check. Every
    failure is recorded; the run does not stop at the first."""
    import schemathesis
    from schemathesis.checks import load_all_checks
    from schemathesis.engine import events, from_schema

    load_all_checks()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.checks.update(included_check_names=CHECKS)
    schema.config.generation.update(max_examples=examples)
    schema.config.seed = seed
    report = FuzzReport()
    deleted: set[str] = set()

    @schema.hook
    def after_call(context: Any, case: Any, response: Any) -> None:
        if case.operation.label == "DELETE /v1/jobs/{job_id}" and response.status_code == 204:
            deleted.add(str((case.path_parameters or {}).get("job_id")))

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        check = _check_name(failure)
        gone = str((case.path_parameters or {}).get("job_id")) in deleted
        why = accepted_reason(check, case.operation.label, response, deleted=gone)
        if why is None:
            return True
        report.accepted[(case.operation.label, check, why)] += 1
        return False

    began = time.perf_counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            phase = getattr(event, "phase", None)
            _read_recorder(report, event.recorder, phase.value if phase is not None else "fuzzing")
        elif isinstance(event, events.NonFatalError | events.FatalError):
            error = getattr(event, "value", None) or getattr(event, "exception", None)
            label = getattr(event, "label", "engine")
            trace = "".join(traceback.format_exception(error)) if isinstance(error, BaseException) else ""
            title = f"error {type(error).__name__}"
            report.record(Finding(label, "engine", None, title, f"{error}\n{trace[-3000:]}"))
    if known is not None:
        _informed(report, schema, known, examples=examples, seed=seed)
    report.seconds = time.perf_counter() - began
    return report


def _check_name(failure: Any) -> str:
    """The check a schemathesis failure comes from, by the failure's class."""
    names = {
        "RejectedPositiveData": "positive_data_acceptance",
        "EnsureResourceAvailability": "ensure_resource_availability",
    }
    return names.get(type(failure).__name__, type(failure).__name__)


def _read_recorder(report: FuzzReport, recorder: Any, phase: str) -> None:
    """Cases, statuses and failures of one finished scenario."""
    for case_id, node in recorder.cases.items():
        label = node.value.operation.label
        interaction = recorder.interactions.get(case_id)
        response = interaction.response if interaction is not None else None
        report.count(label, phase, response.status_code if response is not None else None)
    for case_id, checks in recorder.checks.items():
        label = recorder.cases[case_id].value.operation.label if case_id in recorder.cases else "?"
        for check in checks:
            report.checks[check.name] += 1
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            interaction = recorder.interactions.get(case_id)
            status = interaction.response.status_code if interaction and interaction.response else None
            title = f"{check.name}: {failure.title}"
            answer = interaction.response.content[:300].decode(errors="replace") if status else ""
            message = f"{failure.message}\nanswer: {answer}"
            report.record(Finding(label, phase, status, title, message, check.failure_info.code_sample))


def _informed(report: FuzzReport, schema: Any, known: Known, *, examples: int, seed: int) -> None:
    """Informed cases, checked with every check; the operations that delete run last."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.core.result import Ok

    strategies = informed_requests(known)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if label not in strategies:
            continue

        test = given(case=strategies[label].map(lambda kwargs, op=operation: op.Case(**kwargs)))(
            _informed_case(report, label)
        )
        test = hypothesis_settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are recorded
            suppress_health_check=list(HealthCheck),
        )(test)
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            hypothesis.seed(seed)(test)()


def _informed_case(report: FuzzReport, label: str) -> Any:
    """The test body of one informed case of the operation ``label``: call, record, check."""
    from schemathesis.core.failures import Failure, FailureGroup

    def one_case(case: Any) -> None:
        try:
            response = case.call()
        except Exception as exc:  # the app raised instead of answering: a 500 to a client
            report.count(label, "informed", 500)
            title = f"unhandled {type(exc).__name__}"
            report.record(Finding(label, "informed", 500, title, str(exc), case.as_curl_command()))
            return
        report.count(label, "informed", response.status_code)
        try:
            case.validate_response(response)
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else (exc,):
                title = f"{_check_name(failure)}: {failure.title}"
                finding = Finding(
                    label,
                    "informed",
                    response.status_code,
                    title,
                    failure.message,
                    case.as_curl_command(),
                )
                report.record(finding)

    return one_case


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
    from zoorank_app.services.runner import finalise_job, run_model

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
    run_model(settings, done, "fuzz-resnet")
    finalise_job(settings, done)
    call("POST", f"/v1/jobs/{cancelled}/cancel", 200)
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

    from zoorank.groundtruth.training import TrainSettings
    from zoorank.rank import RankOptions
    from zoorank.scores import list_scores

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
    uploads = mix(
        [d.removeprefix("upload:") for d in known.datasets if d.startswith("upload:")],
        st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe="")),
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
        "POST /v1/jobs/{job_id}/cancel": st.builds(
            dict, path_parameters=st.fixed_dictionaries({"job_id": jobs})
        ),
        "DELETE /v1/jobs/{job_id}": st.builds(dict, path_parameters=st.fixed_dictionaries({"job_id": jobs})),
        "DELETE /v1/datasets/{dataset_id}": st.builds(
            dict, path_parameters=st.fixed_dictionaries({"dataset_id": uploads})
        ),
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
        "examples_per_operation_and_phase": examples,
        "checks": CHECKS,
        "checks_run": dict(sorted(report.checks.items())),
        "cases": dict(report.cases),
        "cases_by_phase": dict(report.by_phase),
        "total_cases": report.total,
        "statuses": {op: {str(k): v for k, v in sorted(c.items())} for op, c in report.statuses.items()},
        "failures": [f.__dict__ for f in report.findings],
        "accepted": [
            {"operation": op, "check": check, "why": why, "count": n}
            for (op, check, why), n in sorted(report.accepted.items())
        ],
        "seconds": round(report.seconds, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz_api.json").write_text(json.dumps(payload, indent=1) + "\n")
    phases = ", ".join(f"{phase} {n}" for phase, n in report.by_phase.items())
    lines = [
        "# Schemathesis against the API's own OpenAPI schema",
        "",
        f"`{command}` at commit {payload['commit']}: schemathesis {payload['schemathesis']}, "
        f"hypothesis {payload['hypothesis']}; `schemathesis run --checks all` in-process (every phase, "
        f"up to {examples} cases per operation and phase; every check: "
        f"{', '.join(sorted(report.checks))}), then informed cases (see the module docstring). "
        f"**{report.total} cases ({phases}) in {report.seconds:.0f} s, {len(report.findings)} failures, "
        f"{sum(report.accepted.values())} refusals accepted.**",
        "",
        "| operation | cases | statuses answered |",
        "|---|---:|---|",
    ]
    for op, count in sorted(report.cases.items()):
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
    lines += [
        "",
        "## Refusals accepted (not the API's fault; `ACCEPTED` in the module)",
        "",
        "| operation | check | why | cases |",
        "|---|---|---|---:|",
    ]
    lines += [
        f"| `{op}` | {check} | {why} | {n} |" for (op, check, why), n in sorted(report.accepted.items())
    ]
    lines += ["", "## Found by earlier runs", "", "| request | answered | now |", "|---|---|---|"]
    lines += [f"| {request} | {was} | {now} |" for request, was, now in HISTORY]
    (out / "fuzz_api.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    enter_offline_by_default()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    logging.getLogger("python_multipart").setLevel(logging.ERROR)  # one line per malformed form
    with tempfile.TemporaryDirectory(prefix="zoorank-fuzz-") as tmp:
        app = fuzz_app(Path(tmp) / "var")
        report = fuzz(app, examples=args.examples, seed=args.seed, known=seed_state(app))
    write_results(report, examples=args.examples, seed=args.seed, out=args.out)
    print(
        f"{report.total} cases, {len(report.findings)} failures, {sum(report.accepted.values())} refusals"
        f" accepted, in {report.seconds:.0f} s"
    )
    for finding in report.findings:
        print(f"- {finding.operation} ({finding.mode}) {finding.status}: {finding.title}")


if __name__ == "__main__":
    main()
