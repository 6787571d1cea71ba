"""One ranking request, one set of rules: the library (RankRequest and rank()), the CLI
(``zoorank rank``) and HTTP (``POST /v1/jobs``, which ``zoorank submit`` sends) give the same
field and message to the same bad input, and take the same defaults and conversions."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner
from zoorank_app.settings import Settings

from tests.service_harness import inline_client
from zoorank.cli import load_commands
from zoorank.errors import InvalidInputError
from zoorank.rank import RankOptions, rank
from zoorank.rank_request import DEFAULT_INPUT_SIZE, DEFAULT_SAMPLES_PER_CLASS, RankRequest

cli = load_commands()
runner = CliRunner()
GOOD = {"dataset": "builtin:digits", "models": ["mobilenetv2_100@random"], "scores": ["logme"]}

# (what is wrong, field, message): each row is one mistake a user makes
ROWS: list[tuple[dict[str, Any], str, str]] = [
    ({"models": []}, "models", "the model list is empty"),
    ({"models": ["resnet18@@timm"]}, "models", "must be ARCH@SOURCE"),
    ({"scores": []}, "scores", "the score list is empty"),
    ({"scores": ["bogus"]}, "scores", "unknown score 'bogus'"),
    ({"dataset": "digits"}, "dataset", "must look like KIND:VALUE"),
    ({"options": {"input_size": 8}}, "options", "input_size must be between 16 and 1024"),
    ({"options": {"samples_per_class": 2}}, "options", "below min_samples_per_class"),
    ({"options": {"seed": -1}}, "options", "seed >= 0"),
]
CLI_OPTIONS = {"samples_per_class": "--samples-per-class", "input_size": "--input-size", "seed": "--seed"}


def _argv(body: dict[str, Any]) -> list[str]:
    argv = ["rank", "--dataset", body["dataset"]]
    for name in ("models", "scores"):
        if name in body:
            argv += [f"--{name}", ",".join(body[name])]
    for name, value in body.get("options", {}).items():
        argv += [CLI_OPTIONS[name], str(value)]
    return argv


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    with inline_client(Settings(var_dir=var, data_roots=[var / "data"]), run_jobs=False) as client:
        yield client


@pytest.mark.parametrize(("wrong", "field", "message"), ROWS, ids=[r[2] for r in ROWS])
def test_the_same_mistake_gets_the_same_answer_everywhere(http, wrong, field, message):
    body = {**GOOD, **wrong}
    with pytest.raises(InvalidInputError) as caught:
        RankRequest.from_dict(body)
    assert (caught.value.field, message in str(caught.value)) == (field, True), str(caught.value)
    with pytest.raises(InvalidInputError) as in_rank:  # rank() checks before any work
        rank(body["dataset"], body.get("models"), body.get("scores"), RankOptions(**body.get("options", {})))
    assert in_rank.value.field == field and message in str(in_rank.value)

    answer = http.post("/v1/jobs", json=body)
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert message in answer.json()["detail"], answer.text

    result = runner.invoke(cli, _argv(body))
    assert result.exit_code == 2 and message in result.output, result.output


def test_defaults_and_number_rules_are_the_same_everywhere(http):
    """The CLI's defaults are the request's, "20" is 20 and 0 is each model's own input size
    for the library and for HTTP alike."""
    assert RankOptions().samples_per_class == DEFAULT_SAMPLES_PER_CLASS == 50
    assert RankOptions().input_size == DEFAULT_INPUT_SIZE == 64
    help_text = " ".join(runner.invoke(cli, ["rank", "--help"]).output.replace("│", " ").split())
    assert (
        f"(default: {DEFAULT_SAMPLES_PER_CLASS})" in help_text
        and f"(default: {DEFAULT_INPUT_SIZE})" in help_text
    )

    body = {**GOOD, "options": {"samples_per_class": "20", "input_size": 0}}
    request = RankRequest.from_dict(body)
    assert (request.options.samples_per_class, request.options.input_size) == (20, None)
    job = http.post("/v1/jobs", json=body)
    assert job.status_code == 202, job.text
    stored = http.get(f"/v1/jobs/{job.json()['id']}").json()["options"]
    assert (stored["samples_per_class"], stored["input_size"]) == (20, None)
    for fraction in ({"samples_per_class": 20.5}, {"samples_per_class": True}):
        with pytest.raises(InvalidInputError, match="samples_per_class"):
            RankRequest.from_dict({**GOOD, "options": fraction})
        assert http.post("/v1/jobs", json={**GOOD, "options": fraction}).status_code == 422
