"""core.jsonable: the one JSON-cleaning helper (store columns, reports, study files)."""

import json
import math
from pathlib import Path

import numpy as np

from core.jsonable import jsonable


def test_numpy_and_containers_become_plain_json():
    value = {
        1: np.arange(3),
        "f": np.float32(0.5),
        "b": np.bool_(True),
        "t": (np.int64(2), {"x": [1.5]}),
        "s": "text",
        "n": None,
    }
    out = jsonable(value)
    assert out == {"1": [0, 1, 2], "f": 0.5, "b": True, "t": [2, {"x": [1.5]}], "s": "text", "n": None}
    assert type(out["f"]) is float and type(out["b"]) is bool and type(out["t"][0]) is int
    json.dumps(out, allow_nan=False)


def test_non_finite_numbers_become_none_and_unknown_objects_their_string():
    out = jsonable([math.nan, np.float64(np.inf), -math.inf, Path("/x/y")])
    assert out == [None, None, None, "/x/y"]


def test_rounding_and_private_keys_are_options():
    value = {"auc": 0.123456789, "_cache": [1, 2], "nested": {"_tmp": 1, "keep": np.float64(2 / 3)}}
    assert jsonable(value, digits=6, skip_private=True) == {"auc": 0.123457, "nested": {"keep": 0.666667}}
    assert "_cache" in jsonable(value)
