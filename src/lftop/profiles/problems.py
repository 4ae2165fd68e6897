"""A mistake or a warning in a profile, located as FILE:LINE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def shown(value: object) -> str:
    """A value for a message: short, and never recursing into deep structures."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str
    key: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ProfileError(Exception):
    """Every error found in a profile, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
