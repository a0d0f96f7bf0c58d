"""One way to turn results into plain JSON values (the store's JSON columns, reports, study files).

numpy arrays and scalars become lists and Python numbers, mappings become dicts with string keys,
tuples and sets become lists, and a float that is not finite becomes None: JSON has no NaN and
PostgreSQL refuses it. Anything else (a Path, a datetime) becomes its string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(value: Any, *, digits: int | None = None, skip_private: bool = False) -> Any:
    """`value` as str/int/float/bool/None, lists and dicts only.

    digits: round floats to this many decimals (study files stay readable and diffable).
    skip_private: leave out mapping keys that start with "_" (working values, not results)."""

    def clean(v: Any) -> Any:
        if v is None or isinstance(v, (str, bool)):
            return v
        if isinstance(v, (np.bool_,)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            f = float(v)
            if not math.isfinite(f):
                return None
            return round(f, digits) if digits is not None else f
        if isinstance(v, np.ndarray):
            return [clean(x) for x in v.tolist()]
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items() if not (skip_private and str(k).startswith("_"))}
        if isinstance(v, (list, tuple, set, frozenset)):
            return [clean(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return str(v)

    return clean(value)


__all__ = ["jsonable"]
