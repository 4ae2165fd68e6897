"""LLaMA-Factory arguments as YAML, and the `llamafactory-cli` command that would run them."""

from __future__ import annotations

import json
import shlex


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)  # JSON strings, lists and maps are valid YAML flow values


def to_yaml(args: dict[str, object]) -> str:
    """One `key: value` line per argument, in the profile's order."""
    return "".join(f"{key}: {_scalar(value)}\n" for key, value in args.items())


def cli_command(args: dict[str, object]) -> str:
    """The equivalent `llamafactory-cli train` line, as LlamaBoard's "preview command" shows it."""
    parts = ["llamafactory-cli train"]
    for key, value in args.items():
        shown = _scalar(value) if not isinstance(value, str) else value
        parts.append(f"    --{key} {shlex.quote(shown)}")
    return " \\\n".join(parts)
