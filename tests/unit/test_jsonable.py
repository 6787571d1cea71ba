"""zoorank.rank.jsonable: the public rule that turns stored details into plain JSON."""

from __future__ import annotations

import json
import math

import numpy as np

from zoorank.rank import jsonable


def test_numpy_values_keys_and_non_finite_numbers_become_plain_json():
    value = {
        1: np.float32(0.5),
        "array": np.arange(3).reshape(3, 1),
        "pair": (np.int64(2), math.inf),
        "nested": [{"nan": float("nan"), "flag": np.bool_(True)}],
    }
    out = jsonable(value)
    assert out == {
        "1": 0.5,
        "array": [[0], [1], [2]],
        "pair": [2, None],
        "nested": [{"nan": None, "flag": True}],
    }
    assert json.loads(json.dumps(out, allow_nan=False)) == out
