"""Scores against the numbers the authors' published code gives on the same arrays.

The numbers are in tests/fixtures/reference_scores.json, with the upstream file and commit
each came from and the upstream quirks noted there. They were computed outside this
repository (the authors' code needs numba, tensorflow or torch); here the arrays are rebuilt
with :func:`make_arrays`, whose source must stay identical to the fixture's recipe.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoorank.scores import ScoreInputs, get_score

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "reference_scores.json"
REFERENCE = json.loads(FIXTURE.read_text())


def make_arrays(
    seed, n, d, classes, k=0, separation=1.0, scale=1.0, dtype="float64", duplicate_columns=False
):
    """The array recipe shared with tests/unit/test_baselines_reference.py."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    centres = rng.standard_normal((classes, d))
    x = scale * (rng.standard_normal((n, d)) + separation * centres[y])
    logits = None
    if k:
        logit_centres = rng.standard_normal((classes, k))
        logits = 2.0 * rng.standard_normal((n, k)) + 3.0 * logit_centres[y]
    if duplicate_columns:
        x = np.concatenate([x, x], axis=1)
    return x.astype(dtype), y, logits


def test_recipe_is_the_one_the_reference_numbers_were_made_with() -> None:
    assert inspect.getsource(make_arrays) == REFERENCE["generator"]["recipe"]


def _case_id(case: dict[str, Any]) -> str:
    term = f"-{case['detail']}" if "detail" in case else ""
    term += "".join(f"-{v}" for v in case.get("params", {}).values())
    return f"{case['score']}{term}-seed{case['seed']}-n{case['n']}-d{case['d']}-c{case['classes']}"


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=_case_id)
def test_matches_published_code(case: dict[str, Any]) -> None:
    skip = {"score", "source", "value", "detail", "params"}
    args = {k: v for k, v in case.items() if k not in skip}
    x, y, logits = make_arrays(**args)
    spec = get_score(case["score"])
    inputs = ScoreInputs(
        labels=y,
        features=x if "features" in spec.needs else None,
        logits=logits if "logits" in spec.needs else None,
    )
    output = spec(inputs, **case.get("params", {}))
    value = output.details[case["detail"]] if "detail" in case else output.value
    assert value == pytest.approx(case["value"], rel=1e-6, abs=1e-12)
    assert case["source"] in REFERENCE["sources"]
