"""The Textual app: the only package of lftop that imports Textual."""

from __future__ import annotations

import sys
from pathlib import Path

from lftop.console import err


def open_app(home: Path, interval: float, readonly: bool, theme: str | None, no_mouse: bool,
             select: str | None = None) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        err("lftop: the app needs a terminal; without one use the sub-commands (lftop --help), e.g. lftop ls")
        return 2
    import gc

    gc.disable()  # start-up allocates much and frees little; the app collects again after its first frame
    from lftop.tui.app import LftopApp

    app = LftopApp(home, interval, readonly, theme, select)
    message = app.run(mouse=not no_mouse)
    if message:
        print(message)
    return 0
