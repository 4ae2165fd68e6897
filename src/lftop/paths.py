"""Where lftop keeps runs and settings, and where its shipped profiles and themes live."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def home(override: str | os.PathLike[str] | None = None) -> Path:
    """The runs home: --home, else $LFTOP_HOME, else $XDG_STATE_HOME/lftop (~/.local/state/lftop)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("LFTOP_HOME"):
        return Path(os.environ["LFTOP_HOME"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "lftop"


def shipped(kind: str) -> Path:
    """The shipped `profiles` or `themes` folder: inside the wheel, or at the top of a source checkout."""
    installed = _PACKAGE / "_data" / kind
    if installed.is_dir():
        return installed
    return _PACKAGE.parent.parent / kind
