"""What the shells print besides data: messages on stderr, and strict JSON on stdout."""

from __future__ import annotations

import json
import math
import sys


def err(message: str) -> None:
    print(message, file=sys.stderr)


def _finite(value: object) -> object:
    """NaN and infinities as the strings "nan", "inf", "-inf" (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(data: object, indent: int | None = None) -> str:
    """Strict JSON: a non-finite number becomes the string "nan", "inf" or "-inf"."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)
