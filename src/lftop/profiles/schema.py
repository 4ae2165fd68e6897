"""LLaMA-Factory's argument schema: every `[train]` key, its type and its allowed values.

Read from the installed llamafactory's own dataclasses, or from the snapshot shipped beside this file
(generated from llamafactory 0.9.5 by `python -m lftop.profiles.schema`) when llamafactory is not importable
or is the very version the snapshot was taken from.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("llamafactory_schema.json")
_DATACLASSES = ("ModelArguments", "DataArguments", "FinetuningArguments", "GeneratingArguments", "TrainingArguments")


@dataclass(frozen=True)
class Field:
    """One argument: `kind` is bool, int, float, str or any; `choices` when the value is an enum or Literal."""

    name: str
    kind: str
    nullable: bool
    choices: tuple[str, ...] | None
    default: object


@dataclass(frozen=True)
class Schema:
    version: str
    source: str  # "installed llamafactory" or "snapshot"
    fields: dict[str, Field]


def _describe(annotation: object) -> tuple[str, bool, tuple[str, ...] | None]:
    """Reduce a type annotation to (kind, nullable, choices)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        enums = [m for m in members if isinstance(m, type) and issubclass(m, enum.Enum)]
        if enums:  # e.g. Union[OptimizerNames, str]: transformers converts, so only the enum's values pass
            return "str", nullable, tuple(str(e.value) for e in enums[0])
        if len(members) == 1:
            kind, _, choices = _describe(members[0])
            return kind, nullable, choices
        return "any", nullable, None
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        kinds = {type(v) for v in values}
        kind = {bool: "bool", int: "int", str: "str"}.get(kinds.pop(), "any") if len(kinds) == 1 else "any"
        return kind, False, tuple(str(v) for v in values)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "str", False, tuple(str(e.value) for e in annotation)
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation, "any"), False, None


def _default(field: dataclasses.Field) -> object:
    value = field.default
    if value is dataclasses.MISSING:
        value = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
    if isinstance(value, enum.Enum):
        value = value.value
    return value if isinstance(value, (bool, int, float, str, type(None))) else None


def from_llamafactory() -> Schema:
    """Read the schema from the installed llamafactory (imports torch and transformers: seconds)."""
    import importlib.metadata

    from llamafactory import hparams

    fields: dict[str, Field] = {}
    for cls_name in _DATACLASSES:
        cls = getattr(hparams, cls_name)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            kind, nullable, choices = _describe(hints.get(f.name, f.type))
            default = _default(f)
            fields[f.name] = Field(f.name, kind, nullable or default is None, choices, default)
    return Schema(importlib.metadata.version("llamafactory"), "installed llamafactory", fields)


def to_json(schema: Schema) -> str:
    fields = {n: dataclasses.asdict(f) for n, f in sorted(schema.fields.items())}
    return json.dumps(
        {"llamafactory": schema.version, "fields": fields},
        indent=1,
        sort_keys=True,
    )


def from_snapshot() -> Schema:
    data = json.loads(SNAPSHOT.read_text())
    fields = {}
    for name, f in data["fields"].items():
        f["choices"] = tuple(f["choices"]) if f["choices"] is not None else None
        fields[name] = Field(**f)
    return Schema(data["llamafactory"], "snapshot", fields)


@cache
def load() -> Schema:
    """The snapshot when it describes the installed llamafactory (or none is installed), else the live schema."""
    import importlib.metadata

    snapshot = from_snapshot()
    try:
        installed = importlib.metadata.version("llamafactory")
    except importlib.metadata.PackageNotFoundError:
        return snapshot
    if installed == snapshot.version:
        return snapshot
    try:
        return from_llamafactory()
    except Exception:  # a broken install must not stop validation: the snapshot still describes 0.9.5
        return snapshot


def default(name: str) -> object:
    """LLaMA-Factory's (or transformers') default for an argument: the one place lftop takes defaults from."""
    return load().fields[name].default


if __name__ == "__main__":
    SNAPSHOT.write_text(to_json(from_llamafactory()) + "\n")
    print(f"wrote {SNAPSHOT}")
