"""Read TOML profiles with the line of every key, following `extends` chains.

Only a profile that cannot be read or parsed at all raises ProfileError; what is wrong inside it or its
ancestors (a table that is not one, a parent that is missing, a FIFO or a loop) is collected in `problems`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lftop.profiles import tomlfile
from lftop.profiles.problems import Problem, ProfileError, shown

MAX_EXTENDS = 32  # profiles in one chain
MAX_NESTING = 16  # lists and tables inside a value; LLaMA-Factory's arguments are flat
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")  # [table] or [[array]]
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")
OWN = ("extends", "abstract")  # [profile] keys of one file, never inherited


@dataclass
class RawProfile:
    """Merged tables of a profile and its ancestors, with where each key was set."""

    path: Path
    tables: dict[str, dict] = field(default_factory=dict)
    origin: dict[tuple[str, str], tuple[Path, int | None]] = field(default_factory=dict)
    chain: list[Path] = field(default_factory=list)
    abstract: bool = False  # `[profile] abstract = true` of this file itself; not inherited
    problems: list[Problem] = field(default_factory=list)
    broken: bool = False  # an ancestor could not be read: keys it may hold are unknown

    def where(self, table: str, key: str | None = None) -> tuple[Path, int | None]:
        if key is not None and (table, key) in self.origin:
            return self.origin[(table, key)]
        return self.origin.get((table, ""), (self.path, None))


def key_lines(text: str) -> dict[tuple[str, str], int]:
    """Map (table, key) and (table, "") for the header to 1-based line numbers; top-level keys are in table ""."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        if header := _HEADER.match(line):
            table = header.group(1).strip().strip("\"'")
            lines.setdefault((table, ""), number)
        elif key := _KEY.match(line):
            lines.setdefault((table, key.group(1).strip("\"'")), number)
    return lines


def bad_value(value: object) -> str | None:
    """Why a value cannot be used whatever its key: a NUL character, or nesting deeper than MAX_NESTING."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_NESTING:
            return f"lists or tables nested more than {MAX_NESTING} deep"
        if isinstance(item, str) and "\0" in item:
            return "contains a NUL character"
        if isinstance(item, dict):
            pending += [(k, depth + 1) for k in item] + [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            pending += [(v, depth + 1) for v in item]
    return None


def _file(path: Path, extended_from: tuple[Path, int | None, str] | None) -> tuple[dict, dict[tuple[str, str], int]]:
    """Parse one file; a file that cannot be read is named where it is extended from, if it is."""
    try:
        data, text = tomlfile.read(path)
    except tomlfile.Unreadable as exc:
        if extended_from is None:
            raise ProfileError([Problem(path, None, str(exc))]) from None
        child, line, name = extended_from
        where = f" (relative to {child.parent})" if exc.missing else ""
        raise ProfileError([Problem(child, line, f"{name}: {exc}{where}", "extends")]) from None
    except tomlfile.TomlError as exc:
        raise ProfileError([Problem(path, exc.line, str(exc))]) from None
    return data, key_lines(text)


def read(path: Path) -> RawProfile:
    """Read a profile and the profiles it extends; tables merge key by key, the child winning."""
    try:
        resolved = tomlfile.resolve(path)
    except tomlfile.Unreadable as exc:
        raise ProfileError([Problem(path, None, str(exc))]) from None
    return _read(resolved, (), None)


def _read(path: Path, stack: tuple[Path, ...], extended_from: tuple[Path, int | None, str] | None) -> RawProfile:
    data, lines = _file(path, extended_from)
    raw = RawProfile(path)
    meta = data.get("profile")
    if isinstance(meta, dict) and "extends" in meta:
        _extend(raw, meta["extends"], lines.get(("profile", "extends")), stack)
    raw.chain = [*raw.chain, path]
    for table, values in data.items():
        if not isinstance(values, dict):
            line = lines.get(("", table)) or lines.get((table, ""))
            raw.problems.append(Problem(path, line, f"expected a table, got {shown(values)}; "
                                        f"write [{table}] with its keys on the lines below", table))
            continue
        raw.origin[(table, "")] = (path, lines.get((table, "")))
        merged = raw.tables.setdefault(table, {})
        for key, value in values.items():
            line = lines.get((table, key))
            if message := bad_value(key) or bad_value(value):
                raw.problems.append(Problem(path, line, message, key))
            elif not (table == "profile" and key in OWN):
                merged[key] = value
                raw.origin[(table, key)] = (path, line)
    abstract = meta.get("abstract", False) if isinstance(meta, dict) else False
    if not isinstance(abstract, bool):
        raw.problems.append(Problem(path, lines.get(("profile", "abstract")), f"expected true or false, got "
                                    f"{shown(abstract)}", "abstract"))
    raw.abstract = abstract is True
    return raw


def _extend(raw: RawProfile, parent: object, line: int | None, stack: tuple[Path, ...]) -> None:
    """Merge the parent's tables into `raw`, or add why it cannot be."""
    path = raw.path
    raw.broken = True
    if not isinstance(parent, str) or not parent or bad_value(parent):
        raw.problems.append(Problem(path, line, f"expected the path of a profile, relative to this file; got "
                                    f"{shown(parent)}", "extends"))
        return
    if len(stack) >= MAX_EXTENDS:
        raw.problems.append(Problem(path, line, f"more than {MAX_EXTENDS} profiles in one extends chain", "extends"))
        return
    try:
        parent_path = tomlfile.resolve(path.parent / parent)
    except tomlfile.Unreadable as exc:
        raw.problems.append(Problem(path, line, f"{parent}: {exc}", "extends"))
        return
    if parent_path in (*stack, path):
        cycle = " -> ".join(p.name for p in (*stack, path, parent_path))
        raw.problems.append(Problem(path, line, f"extends cycle: {cycle}", "extends"))
        return
    try:
        base = _read(parent_path, (*stack, path), (path, line, parent))
    except ProfileError as exc:
        raw.problems += exc.problems
        return
    raw.tables, raw.origin, raw.chain, raw.problems, raw.broken = (
        base.tables, base.origin, base.chain, base.problems, base.broken)
