"""Where lftop keeps runs and settings, and where its shipped profiles and themes live."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


class HomeProblem(Exception):
    """The runs home cannot be used; the message names it and says why."""


def home(override: str | os.PathLike[str] | None = None) -> Path:
    """The runs home: --home, else $LFTOP_HOME, else the XDG state dir (~/.local/state/lftop)."""
    if override:
        path = Path(override).expanduser()
    elif os.environ.get("LFTOP_HOME"):
        path = Path(os.environ["LFTOP_HOME"]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_state_dir("lftop", appauthor=False))
    if path.exists() and not path.is_dir():
        raise HomeProblem(f"the runs home {path} is not a directory (set --home or LFTOP_HOME to a folder)")
    return path.absolute()


def shipped(kind: str) -> Path:
    """The shipped `profiles` or `themes` folder: inside the wheel, or at the top of a source checkout."""
    installed = _PACKAGE / "_data" / kind
    if installed.is_dir():
        return installed
    return _PACKAGE.parent.parent / kind
