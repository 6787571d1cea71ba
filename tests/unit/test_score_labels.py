"""Scores refuse labels that are not classes (issue 23): `zoorank score` took 200 distinct
floats and answered logme 1.228, and took NaN labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from zoorank.cli import app as cli
from zoorank.errors import InvalidInputError
from zoorank.scores.inputs import check_labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.linspace(0.0, 1.0, 200), "fractional"),
        (np.array([0.0, 1.0, np.nan, 1.0]), "NaN"),
        (np.arange(50), "class of its own"),
        (np.array([1 + 2j, 2 + 0j]), "integers or strings"),
    ],
)
def test_what_is_not_a_class_label_is_refused(labels, message):
    with pytest.raises(InvalidInputError, match=message):
        check_labels(labels)


def test_integer_valued_floats_and_strings_are_classes():
    assert check_labels(np.array([2.0, 0.0, 2.0, 0.0])).tolist() == [1, 0, 1, 0]
    assert check_labels(np.array(["cat", "dog", "cat"])).tolist() == [0, 1, 0]


def test_the_cli_refuses_float_labels_with_one_line(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(200, 8)))
    np.save(tmp_path / "y.npy", rng.uniform(size=200))
    result = CliRunner().invoke(
        cli, ["score", "logme", "--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    )
    assert result.exit_code != 0 and "fractional" in result.output
    np.save(tmp_path / "y.npy", np.repeat([0, 1], 100))
    ok = CliRunner().invoke(
        cli, ["score", "logme", "--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    )
    assert ok.exit_code == 0 and np.isfinite(json.loads(ok.output)["value"])
