"""config.toml and --interval: every unusable setting named, the default used, never an exception."""

from __future__ import annotations

import os
import time

import pytest

from lftop.tui import settings
from lftop.tui.app import LftopApp
from lftop.tui.screens import ConfirmScreen, HelpScreen, LaunchScreen, RunScreen

THEMES = ["lftop-dark", "lftop-light", "lftop-mono", "textual-dark"]
APP_IDS = [b.id for b in LftopApp.BINDINGS]


def load(home, text: str | bytes, interval: float = 0.0) -> settings.Settings:
    (home / "config.toml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return settings.load(home, interval, None, THEMES, APP_IDS)


@pytest.mark.parametrize(("text", "said"), [
    ("ui = 5\n", "config.toml: ui = 5 is not a table; write [ui] with its settings on the lines below"),
    ('keys = "x"\n', "config.toml: keys = 'x' is not a table"),
    ("notify = [1]\n", "config.toml: notify = a list is not a table"),
    (b"[ui]\ntheme = \"lftop-light\"\n\xff\xfe\n", "config.toml:3: not UTF-8 text: byte 0xff"),
    ("[ui]\ninterval = inf\n", "config.toml [ui] interval: inf is out of range: above 0 and at most 3600 seconds"),
    ("[ui]\ninterval = nan\n", "interval: nan is out of range"),
    ("[ui]\ninterval = -inf\n", "interval: -inf is out of range"),
    ("[ui]\ninterval = 0\n", "interval: 0 is out of range"),
    ("[ui]\ninterval = -2\n", "interval: -2 is out of range"),
    ("[ui]\ninterval = 1e6\n", "interval: 1000000.0 is out of range"),
    ("[ui]\ninterval = true\n", "interval: True is not a number of seconds"),
    ("[ui]\ninterval = [1]\n", "interval: a list is not a number of seconds"),
    ('[ui]\ninterval = "fast"\n', "interval: 'fast' is not a number of seconds"),
    ("[ui]\ntheme = 5\n", "[ui] theme: no theme 5"),
    ("[ui]\nintreval = 2\n", "config.toml [ui]: no setting 'intreval' (did you mean 'interval'?)"),
    ("[uii]\ninterval = 2\n", "config.toml: no section [uii] (did you mean 'ui'?)"),
    ("[keys]\n\"lftop.pause\" = 5\n", "config.toml [keys] 'lftop.pause': keys are a string"),
    ('[keys]\n"lftop.pause" = ""\n', "config.toml [keys] 'lftop.pause': keys are a string"),
    ("[keys]\na.b.c.d = \"x\"\n", "config.toml [keys]: no binding 'a.b.c'"),
    ('[keys]\n"confirm.yse" = "x"\n', "no binding 'confirm.yse' (did you mean 'confirm.yes'?)"),
    ('[notify]\ncommand = "notify-send lftop"\n', 'expected a list of strings, the program and its arguments'),
    ("[notify]\ncommand = []\n", "[notify] command = a list: expected a list of strings"),
    ('[notify]\ncommand = ["notify-send", 1]\n', "[notify] command = a list: expected a list of strings"),
    ('[notify]\ncmd = ["x"]\n', "config.toml [notify]: no setting 'cmd' (did you mean 'command'?)"),
    ("[ui]\nx = " + "[" * 5000 + "]" * 5000 + "\n", "arrays or inline tables nested too deeply"),
    ("[ui\n", "TOML syntax error"),
])
def test_a_bad_setting_is_named_and_the_default_used(home, text, said):
    s = load(home, text)
    assert any(said in problem for problem in s.problems), s.problems
    assert s.interval == settings.DEFAULT_INTERVAL and s.theme in ("lftop-dark", "lftop-light")
    assert s.keymap == {} and s.notify_command is None


def test_good_settings_are_used(home):
    s = load(home, '[ui]\ntheme = "lftop-mono"\ninterval = 2.5\n[keys]\nlftop.pause = "x"\n"run.back" = "b"\n'
                   '[notify]\ncommand = ["notify-send", "--app-name=lftop"]\n')
    assert (s.theme, s.interval, s.problems) == ("lftop-mono", 2.5, [])
    assert s.keymap == {"lftop.pause": "x", "run.back": "b"}
    assert s.notify_command == ("notify-send", "--app-name=lftop")


def test_a_config_toml_that_is_a_fifo_or_directory_is_named_without_blocking(home):
    os.mkfifo(home / "config.toml")
    started = time.monotonic()
    s = settings.load(home, 0.0, None, THEMES, APP_IDS)
    assert time.monotonic() - started < 5
    assert s.problems == [f"ignoring {home / 'config.toml'}: a FIFO, not a file"]
    (home / "config.toml").unlink()
    (home / "config.toml").mkdir()
    assert settings.load(home, 0.0, None, THEMES, APP_IDS).problems == [
        f"ignoring {home / 'config.toml'}: a directory, not a file"]
    assert settings.load(home / "nowhere", 0.0, None, THEMES, APP_IDS).problems == []  # no file: defaults, quietly


def test_the_command_lines_interval_is_checked_too(home):
    s = settings.load(home, float("inf"), None, THEMES, APP_IDS)
    assert s.interval == 1.0
    assert s.problems == ["--interval: inf is out of range: above 0 and at most 3600 seconds; using 1"]
    assert settings.load(home, 0.25, None, THEMES, APP_IDS).interval == 0.25


def test_every_screens_binding_ids_are_known_from_the_classes():
    from_classes = {b.id for cls in (LftopApp, ConfirmScreen, HelpScreen, RunScreen, LaunchScreen)
                    for b in cls.BINDINGS if b.id}
    assert {"confirm.yes", "help.close", "run.back", "launch.go", "launch.apply9"} <= from_classes
    assert set(settings.all_binding_ids(APP_IDS)) >= from_classes


def test_a_binding_added_to_a_screen_class_is_known_without_a_list_to_update(monkeypatch):
    from textual.binding import Binding

    monkeypatch.setattr(RunScreen, "BINDINGS", [*RunScreen.BINDINGS, Binding("z", "zoom", "Zoom", id="run.zoom")])
    assert "run.zoom" in settings.all_binding_ids(APP_IDS)


async def test_a_screens_binding_remapped_in_config_toml_works(home):
    (home / "config.toml").write_text('[keys]\n"help.close" = "c"\n')
    app = LftopApp(home, interval=0.25)
    assert app.problems == []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
