"""TOML profiles: reading, `extends`, validation against LLaMA-Factory's arguments, conversion.

The names below are imported on first use, so that reading config.toml through `tomlfile` alone (the app's
first frame) does not load the validator and LLaMA-Factory's schema.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lftop.profiles.launch import Launch
    from lftop.profiles.problems import Problem, ProfileError
    from lftop.profiles.profile import Profile, load

_HOME = {"Launch": "launch", "Problem": "problems", "ProfileError": "problems", "Profile": "profile", "load": "profile"}
__all__ = ["Launch", "Problem", "Profile", "ProfileError", "load"]


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module 'lftop.profiles' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lftop.profiles.{_HOME[name]}"), name)
