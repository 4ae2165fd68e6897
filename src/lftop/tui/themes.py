"""Colour themes from the themes/ folder (TOML files), registered with Textual by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

from textual.theme import Theme

from lftop import paths

FIELDS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background", "surface",
          "panel", "boost", "dark")


def load_themes(folder: Path | None = None) -> list[Theme]:
    found = []
    for path in sorted((folder or paths.shipped("themes")).glob("*.toml")):
        data = tomllib.loads(path.read_text())["theme"]
        found.append(Theme(name=data.get("name", path.stem), **{k: data[k] for k in FIELDS if k in data},
                           variables=data.get("variables", {})))
    return found
