"""Read TOML profiles with the line of every key, following `extends` chains."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from lftop.profiles.problems import Problem, ProfileError

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


@dataclass
class RawProfile:
    """Merged tables of a profile and its ancestors, with where each key was set."""

    path: Path
    tables: dict[str, dict] = field(default_factory=dict)
    origin: dict[tuple[str, str], tuple[Path, int | None]] = field(default_factory=dict)
    chain: list[Path] = field(default_factory=list)
    abstract: bool = False  # `[profile] abstract = true` of this file itself; not inherited

    def where(self, table: str, key: str | None = None) -> tuple[Path, int | None]:
        if key is not None and (table, key) in self.origin:
            return self.origin[(table, key)]
        return self.origin.get((table, ""), (self.path, None))


def key_lines(text: str) -> dict[tuple[str, str], int]:
    """Map (table, key) and (table, "") for the header to 1-based line numbers."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        if header := _HEADER.match(line):
            table = header.group(1).strip().strip("\"'")
            lines.setdefault((table, ""), number)
        elif key := _KEY.match(line):
            lines.setdefault((table, key.group(1).strip("\"'")), number)
    return lines


def _parse(path: Path) -> tuple[dict, dict[tuple[str, str], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([Problem(path, None, "no such profile")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([Problem(path, None, f"cannot read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pos = _TOML_POS.search(str(exc))
        line, col = (int(pos.group(1)), int(pos.group(2))) if pos else (None, None)
        message = _TOML_POS.sub("", str(exc)).strip()
        suffix = f" (column {col})" if col else ""
        raise ProfileError([Problem(path, line, f"TOML syntax error: {message}{suffix}")]) from None
    return data, key_lines(text)


def read(path: Path, _stack: tuple[Path, ...] = ()) -> RawProfile:
    """Read a profile and the profiles it extends; tables merge key by key, the child winning."""
    path = path.resolve()
    if path in _stack:
        cycle = " -> ".join(p.name for p in (*_stack, path))
        raise ProfileError([Problem(_stack[-1], None, f"extends cycle: {cycle}", "extends")])
    data, lines = _parse(path)
    raw = RawProfile(path)
    parent = data.get("profile", {}).get("extends") if isinstance(data.get("profile"), dict) else None
    if parent is not None:
        if not isinstance(parent, str):
            raise ProfileError([Problem(path, lines.get(("profile", "extends")), "expected a path string", "extends")])
        parent_path = (path.parent / parent).resolve()
        if not parent_path.exists():
            raise ProfileError(
                [Problem(path, lines.get(("profile", "extends")), f"{parent}: no such file (relative to {path.parent})", "extends")]
            )
        base = read(parent_path, (*_stack, path))
        raw.tables, raw.origin, raw.chain = base.tables, base.origin, base.chain
    raw.chain = [*raw.chain, path]
    for table, values in data.items():
        raw.origin[(table, "")] = (path, lines.get((table, "")))
        if not isinstance(values, dict):
            raw.tables[table] = values
            continue
        merged = raw.tables.setdefault(table, {})
        for key, value in values.items():
            merged[key] = value
            raw.origin[(table, key)] = (path, lines.get((table, key)))
    raw.tables.get("profile", {}).pop("extends", None)
    raw.abstract = raw.tables.get("profile", {}).pop("abstract", False) is True
    return raw
