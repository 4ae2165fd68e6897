"""Fuzz: any config.toml structure or bytes, any --interval: settings load, usable, never an exception."""

from __future__ import annotations

import math
import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lftop.tui import settings as lftop_settings
from lftop.tui.app import LftopApp
from tomlgen import dumps, table, values

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THEMES = ["lftop-dark", "lftop-light", "lftop-mono"]
APP_IDS = [b.id for b in LftopApp.BINDINGS]
ALL_IDS = lftop_settings.all_binding_ids(APP_IDS)
SECTIONS = {
    "ui": table(["theme", "interval"], {"theme": st.sampled_from([*THEMES, "lftop-mnoo"]),
                                        "interval": st.floats() | st.integers() | st.text(max_size=5)}),
    "keys": table([*ALL_IDS, "lftop.pasue"], {i: st.sampled_from(["x", "ctrl+x", "", "a,b"]) for i in ALL_IDS}),
    "notify": table(["command"], {"command": st.lists(st.text(max_size=6), max_size=3) | st.text(max_size=6)}),
}
configs = st.fixed_dictionaries({}, optional={**{name: t | values for name, t in SECTIONS.items()}, "iu": values})


def _usable(s: lftop_settings.Settings) -> None:
    assert math.isfinite(s.interval) and 0 < s.interval <= lftop_settings.MAX_INTERVAL
    assert s.theme in THEMES
    assert all(i in ALL_IDS and isinstance(k, str) and k.strip() for i, k in s.keymap.items())
    assert s.notify_command is None or (s.notify_command and all(isinstance(a, str) and a for a in s.notify_command))
    assert all(isinstance(p, str) and p for p in s.problems)


def _load(data: bytes, interval: float = 0.0) -> lftop_settings.Settings:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_bytes(data)
        return lftop_settings.load(Path(tmp), interval, None, THEMES, APP_IDS)


@FUZZ
@given(configs)
def test_any_config_structure_loads_usable_settings(config):
    text = dumps(config)
    assert isinstance(tomllib.loads(text), dict)  # the fuzz reaches the checks, not only the parser
    _usable(_load(text.encode()))


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_load_usable_settings(data):
    _usable(_load(data))


@FUZZ
@given(st.floats() | st.integers(-10**6, 10**6))
def test_any_command_line_interval_loads_usable_settings(interval):
    s = _load(b"", interval)
    _usable(s)
    assert s.interval == interval or s.problems or not interval
