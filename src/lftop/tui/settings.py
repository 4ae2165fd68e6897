"""The app's settings: $LFTOP_HOME/config.toml under the command line's options, each checked.

What cannot be used (a file that does not parse, a misspelt theme or binding id, an interval that is not a
number) is named with a suggestion in `problems`, and the default is used instead.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_THEME = "lftop-dark"
DEFAULT_INTERVAL = 1.0


@dataclass
class Settings:
    theme: str = DEFAULT_THEME
    interval: float = DEFAULT_INTERVAL
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys
    problems: list[str] = field(default_factory=list)


def load(home: Path, interval: float, theme: str | None, themes: list[str], binding_ids: list[str]) -> Settings:
    """`interval` 0 and `theme` None: config.toml's ([ui] interval, theme), else the defaults; [keys] remaps."""
    s = Settings()
    config = _read(home / "config.toml", s.problems)
    ui = config.get("ui", {})
    s.interval = interval or _interval(ui.get("interval", DEFAULT_INTERVAL), s.problems)
    s.theme = _theme(theme or ui.get("theme", DEFAULT_THEME), "--theme" if theme else "[ui] theme", themes, s.problems)
    s.keymap = _keys(_flat(config.get("keys", {})), binding_ids, s.problems)
    return s


def _read(path: Path, problems: list[str]) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(f"ignoring {path}: {exc}")
        return {}


def _interval(value, problems: list[str]) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        problems.append(f"config.toml [ui] interval = {value!r} is not a number of seconds; using {DEFAULT_INTERVAL:g}")
        return DEFAULT_INTERVAL


def _theme(name, where: str, themes: list[str], problems: list[str]) -> str:
    if isinstance(name, str) and name in themes:
        return name
    ours = ", ".join(sorted(t for t in themes if t.startswith("lftop-")))
    problems.append(f"{where}: no theme {name!r}{_near(str(name), themes)}; using {DEFAULT_THEME} "
                    f"(lftop's: {ours}; ctrl+p, Change theme lists Textual's)")
    return DEFAULT_THEME


def _keys(keys: dict, binding_ids: list[str], problems: list[str]) -> dict[str, str]:
    keymap = {}
    for binding_id, value in keys.items():
        if binding_id not in binding_ids:
            problems.append(f"config.toml [keys]: no binding {binding_id!r}{_near(binding_id, binding_ids)}; "
                            f"the ids are {', '.join(binding_ids)}")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f'config.toml [keys] {binding_id!r}: keys are a string, e.g. "x" or "x,ctrl+x"')
        else:
            keymap[binding_id] = value
    return keymap


def _flat(table: dict, prefix: str = "") -> dict:
    """`lftop.pause = "x"` in TOML is a nested table; `"lftop.pause" = "x"` is not: both mean the same here."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _near(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
