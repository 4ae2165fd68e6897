"""Strict JSON for `--json` output: nan and infinities, which json.dumps writes as the non-JSON
NaN/Infinity, are written as the strings "nan", "inf" and "-inf" (what the training log printed).

    strict_json.dumps({"loss": float("nan")})  ->  '{"loss": "nan"}'
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float inside dicts, lists and tuples replaced by its string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of `value` that is always valid JSON (allow_nan=False holds: non-finite floats become strings)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
