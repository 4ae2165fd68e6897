"""Hypothesis strategies for TOML documents, and a writer for them (tomllib only reads)."""

from __future__ import annotations

import datetime
import json
import math

from hypothesis import strategies as st


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but DEL must be escaped too and astral characters kept raw."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else "nan" if math.isnan(value) else repr(value)
    if isinstance(value, (int, datetime.date)):
        return str(value) if isinstance(value, int) else value.isoformat()
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + "}"


def dumps(document: dict) -> str:
    """Top-level values that are not tables first, then one [table] per table, its tables inline."""
    lines = [f"{_string(k)} = {_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for name, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{_string(name)}]")
            lines += [f"{_string(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.dates())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def table(keys: list[str], special: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy[dict]:
    """Tables whose keys are mostly `keys` (plus a few unknown ones), each value near-valid or anything."""
    special = special or {}
    key = st.sampled_from(keys) | st.text(max_size=8)
    return st.dictionaries(key, st.just(None), max_size=6).flatmap(lambda chosen: st.fixed_dictionaries(
        {k: (special[k] | values) if k in special else values for k in chosen}))
