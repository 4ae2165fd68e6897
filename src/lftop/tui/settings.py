"""The app's settings: $LFTOP_HOME/config.toml under the command line's options, each checked.

What cannot be used (a file that is not UTF-8 TOML, a section that is not a table, a misspelt theme, section or
binding id, an interval that is not a finite number of seconds) is named with a suggestion in `problems`, and
the default is used instead; loading never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lftop.profiles import tomlfile
from lftop.profiles.problems import shown
from lftop.units import MAX_INTERVAL

DEFAULT_THEME = "lftop-dark"
DEFAULT_INTERVAL = 1.0
SECTIONS = {"ui": ("theme", "interval"), "keys": None, "notify": ("command",)}  # None: any key


@dataclass
class Settings:
    theme: str = DEFAULT_THEME
    interval: float = DEFAULT_INTERVAL
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys
    notify_command: tuple[str, ...] | None = None  # [notify] command: an argv, never a shell string
    problems: list[str] = field(default_factory=list)


def refresh_interval(value: object) -> float:
    """A refresh interval in seconds: a finite number above 0 and at most MAX_INTERVAL; else ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{shown(value)} is not a number of seconds")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is not a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_INTERVAL):
        raise ValueError(f"{shown(value)} is out of range: above 0 and at most {MAX_INTERVAL:g} seconds")
    return seconds


def load(home: Path, interval: float, theme: str | None, themes: list[str], binding_ids: list[str]) -> Settings:
    """`interval` 0 and `theme` None: config.toml's ([ui] interval, theme), else the defaults; [keys] remaps,
    by the ids in `binding_ids` or of any lftop screen; [notify] command is an argv list."""
    s = Settings()
    config = _sections(_read(home / "config.toml", s.problems), s.problems)
    ui = config["ui"]
    if interval:
        s.interval = _interval(interval, "--interval", s.problems)
    elif "interval" in ui:
        s.interval = _interval(ui["interval"], "config.toml [ui] interval", s.problems)
    s.theme = _theme(theme or ui.get("theme", DEFAULT_THEME), "--theme" if theme else "[ui] theme", themes, s.problems)
    s.keymap = _keys(_flat(config["keys"]), binding_ids, s.problems)
    if "command" in config["notify"]:
        s.notify_command = _command(config["notify"]["command"], s.problems)
    return s


def _read(path: Path, problems: list[str]) -> dict:
    try:
        return tomlfile.read(path)[0]
    except tomlfile.Unreadable as exc:
        if not exc.missing:
            problems.append(f"ignoring {path}: {exc}")
    except tomlfile.TomlError as exc:
        problems.append(f"ignoring {path}{f':{exc.line}' if exc.line else ''}: {exc}")
    return {}


def _sections(config: dict, problems: list[str]) -> dict[str, dict]:
    """Every known section as a table (empty when absent or unusable); unknown sections and keys named."""
    for name in config:
        if name not in SECTIONS:
            problems.append(f"config.toml: no section [{name}]{_near(name, list(SECTIONS))}; "
                            f"the sections are {', '.join(f'[{s}]' for s in SECTIONS)}")
    tables = {}
    for name, keys in SECTIONS.items():
        table = config.get(name, {})
        if not isinstance(table, dict):
            problems.append(f"config.toml: {name} = {shown(table)} is not a table; write [{name}] with its "
                            "settings on the lines below; using the defaults")
            table = {}
        for key in table if keys is not None else ():
            if key not in keys:
                problems.append(f"config.toml [{name}]: no setting {key!r}{_near(key, list(keys))}; "
                                f"the settings are {', '.join(keys)}")
        tables[name] = table
    return tables


def _interval(value: object, where: str, problems: list[str]) -> float:
    try:
        return refresh_interval(value)
    except ValueError as exc:
        problems.append(f"{where}: {exc}; using {DEFAULT_INTERVAL:g}")
        return DEFAULT_INTERVAL


def _theme(name, where: str, themes: list[str], problems: list[str]) -> str:
    if isinstance(name, str) and name in themes:
        return name
    ours = ", ".join(sorted(t for t in themes if t.startswith("lftop-")))
    problems.append(f"{where}: no theme {shown(name)}{_near(str(name), themes)}; using {DEFAULT_THEME} "
                    f"(lftop's: {ours}; ctrl+p, Change theme lists Textual's)")
    return DEFAULT_THEME


def _keys(keys: dict, binding_ids: list[str], problems: list[str]) -> dict[str, str]:
    if any(binding_id not in binding_ids for binding_id in keys):
        binding_ids = all_binding_ids(binding_ids)
    keymap = {}
    for binding_id, value in keys.items():
        if binding_id not in binding_ids:
            problems.append(f"config.toml [keys]: no binding {binding_id!r}{_near(binding_id, binding_ids)}; "
                            f"the ids are {', '.join(binding_ids)}")
        elif not isinstance(value, str) or not value.strip() or "\0" in value:
            problems.append(f'config.toml [keys] {binding_id!r}: keys are a string, e.g. "x" or "x,ctrl+x"')
        else:
            keymap[binding_id] = value
    return keymap


def all_binding_ids(given: list[str]) -> list[str]:
    """`given` and the binding ids of every lftop screen and widget class, read from their BINDINGS.

    The screens are imported here, not before: the first frame does not need them."""
    from textual.binding import Binding
    from textual.dom import DOMNode

    from lftop.tui import screens  # noqa: F401  (defines the screen classes walked below)

    ids = dict.fromkeys(given)
    pending = [DOMNode]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.__module__.startswith("lftop.tui."):
            ids.update(dict.fromkeys(b.id for b in vars(cls).get("BINDINGS", ()) if isinstance(b, Binding) and b.id))
    return list(ids)


def _command(value: object, problems: list[str]) -> tuple[str, ...] | None:
    if isinstance(value, list) and value and all(isinstance(v, str) and v and "\0" not in v for v in value):
        return tuple(value)
    problems.append(f"config.toml [notify] command = {shown(value)}: expected a list of strings, the program and "
                    'its arguments, e.g. ["notify-send", "lftop"] (a string is not run through a shell); no command')
    return None


def _flat(table: dict, prefix: str = "", depth: int = 0) -> dict:
    """`lftop.pause = "x"` in TOML is a nested table; `"lftop.pause" = "x"` is not: both mean the same here.

    Deeper than any binding id (two levels), a table is kept as the value, to be named as not a key string."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict) and depth < 2:
            flat.update(_flat(value, f"{prefix}{key}.", depth + 1))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _near(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
