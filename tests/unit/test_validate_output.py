"""What ``zoorank validate`` prints: a tie is marked, never a blank cell; ``best`` names a
score only when its τ is positive; fewer than 4 models warn, in the text and in the JSON.

The ground truth is not trained here: ``validate`` is replaced by the statistics of stored
numbers (:func:`compare_with_ground_truth`, as ``validate`` computes them), so the command's
output is checked on pools whose τ are known by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from typer.testing import CliRunner

import zoorank.groundtruth
from zoorank.cli import load_commands
from zoorank.groundtruth import compare_with_ground_truth
from zoorank.groundtruth.validation import GroundTruth, ValidationResult

runner = CliRunner()
ARGS = ["validate", "--dataset", "builtin:digits"]
THREE = {"a": 0.6, "b": 0.7, "c": 0.9}
FIVE = {"a": 0.60, "b": 0.70, "c": 0.75, "d": 0.80, "e": 0.90}


def _stored(values: Mapping[str, Mapping[str, float]], accuracy: Mapping[str, float]) -> ValidationResult:
    found = compare_with_ground_truth(values, dict.fromkeys(values, "higher"), {0: accuracy}, resamples=50)
    return ValidationResult(
        dataset="builtin:digits",
        dataset_fingerprint="0" * 64,
        mode="linear",
        loss="ce",
        alpha=None,
        seeds=[0],
        settings={},
        rank_options={},
        split={},
        ground_truth=[GroundTruth(model=m, accuracy=a, accuracy_std=0.0) for m, a in accuracy.items()],
        scores={m: {s: values[s][m] for s in values} for m in accuracy},
        score_errors={},
        agreement=found["agreement"],
        best=found["best"],
        seed_agreement={},
        above_random=found["above_random"],
        aggregate_ranking=[],
        score_seconds={},
        seconds=1.0,
        versions={},
    )


@pytest.fixture
def validate_returns(monkeypatch: pytest.MonkeyPatch):
    def install(result: ValidationResult) -> None:
        monkeypatch.setattr(zoorank.groundtruth, "validate", lambda *args, **kwargs: result)

    return install


def _row(output: str, score: str) -> list[str]:
    """The cells of ``score``'s row in the agreement table."""
    line = next(line for line in output.splitlines() if line.startswith(f"│ {score} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


def test_a_tie_is_marked_with_a_legend_not_left_blank(validate_returns) -> None:
    validate_returns(_stored({"prior": dict.fromkeys(FIVE, 0.1), "good": dict(FIVE)}, FIVE))
    done = runner.invoke(load_commands(), ARGS)
    assert done.exit_code == 0, done.output
    *_, wtau, ktau, pearson, regret, first = _row(done.stdout, "prior")
    assert (wtau, ktau, pearson) == ("tie (undefined)",) * 3
    assert regret == "0.15" and first == "tie of 5"  # 0.90 - mean of all five accuracies
    assert "tie (undefined) (prior): the score gives every model the same value" in done.stdout
    assert _row(done.stdout, "good")[3:6] == ["1", "1", "1"]
    assert all(cell for cell in _row(done.stdout, "good"))


def test_best_names_no_score_whose_tau_is_not_positive(validate_returns) -> None:
    backwards = {m: -a for m, a in FIVE.items()}
    validate_returns(_stored({"logme": backwards, "prior": dict.fromkeys(FIVE, 0.1)}, FIVE))
    done = runner.invoke(load_commands(), ARGS)
    assert done.exit_code == 0, done.output
    assert _row(done.stdout, "logme")[3] == "-1"
    assert "best by weighted τ: none. no score agreed with the ground truth: the highest" in done.stdout
    assert "best by weighted τ: logme" not in done.stdout
    payload = json.loads(runner.invoke(load_commands(), [*ARGS, "--json"]).stdout)
    assert payload["best"]["weighted_tau"]["best"] is None
    assert payload["best"]["weighted_tau"]["value"] == pytest.approx(-1.0)


def test_best_is_named_with_its_tau_when_positive(validate_returns) -> None:
    backwards = {m: -a for m, a in FIVE.items()}
    validate_returns(_stored({"logme": backwards, "good": dict(FIVE)}, FIVE))
    done = runner.invoke(load_commands(), ARGS)
    assert "best by weighted τ: good (+1.00); not distinguishable from it: " in done.stdout
    assert "best by kendall τ: good (+1.00)" in done.stdout


def test_fewer_than_four_models_warn_in_text_and_json(validate_returns) -> None:
    validate_returns(_stored({"good": dict(THREE)}, THREE))
    done = runner.invoke(load_commands(), ARGS)
    assert done.exit_code == 0, done.output
    assert "warning: only 3 models have a ground truth: rank agreement over so few" in done.stdout
    payload = json.loads(runner.invoke(load_commands(), [*ARGS, "--json"]).stdout)
    assert len(payload["warnings"]) == 1 and payload["warnings"][0].startswith("only 3 models")
    validate_returns(_stored({"good": dict(FIVE)}, FIVE))
    assert "warning" not in runner.invoke(load_commands(), ARGS).stdout
    assert json.loads(runner.invoke(load_commands(), [*ARGS, "--json"]).stdout)["warnings"] == []


def test_python_callers_and_stored_summaries_get_the_same_warning() -> None:
    few = _stored({"good": dict(THREE)}, THREE)
    assert len(few.warnings) == 1 and few.warnings[0].startswith("only 3 models")
    assert few.to_dict()["warnings"] == few.warnings  # what the service stores for a validation job
    assert _stored({"good": dict(FIVE)}, FIVE).warnings == []
