"""A run's directory: run.json, state, training.log, control, events.jsonl. Its state lives here."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lftop.runs.process import ProcessRef

ACTIVE = ("starting", "running", "pausing")
FINAL = ("paused", "completed", "failed", "stopped")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunLocked(Exception):
    """Another lftop is acting on this run right now."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def log(self) -> Path:
        return self.path / "training.log"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    def meta(self) -> dict:
        try:
            return json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_meta(self, meta: dict) -> None:
        write_atomic(self.path / "run.json", json.dumps(meta, indent=1) + "\n")

    def process_ref(self) -> ProcessRef | None:
        """The recorded supervisor (pid and create time), once the run has been started."""
        meta = self.meta()
        return ProcessRef(meta["pid"], meta["create_time"]) if "pid" in meta else None

    def state(self) -> str:
        try:
            return (self.path / "state").read_text().strip() or "starting"
        except OSError:
            return "starting"

    def set_state(self, state: str) -> None:
        write_atomic(self.path / "state", state + "\n")

    def control(self) -> str:
        try:
            return (self.path / "control").read_text().strip()
        except OSError:
            return ""

    def request(self, word: str) -> None:
        write_atomic(self.path / "control", word + "\n")

    def clear_control(self) -> None:
        (self.path / "control").unlink(missing_ok=True)

    def event(self, name: str, **fields) -> None:
        line = json.dumps({"time": time.time(), "event": name, "by": "lftop", "pid": os.getpid(), **fields})
        with open(self.events_file, "a") as f:
            f.write(line + "\n")

    def events(self) -> list[dict]:
        found = []
        try:
            lines = self.events_file.read_text(errors="replace").splitlines()
        except OSError:
            return found
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive, non-blocking: two lftops cannot resume or stop the same run at once."""
        with open(self.path / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"{self.id}: another lftop is acting on this run") from None
            yield


def runs_root(home: Path) -> Path:
    return home / "runs"


def all_runs(home: Path) -> list[RunDir]:
    root = runs_root(home)
    if not root.is_dir():
        return []
    return sorted((RunDir(p) for p in root.iterdir() if (p / "run.json").exists()), key=lambda r: r.id)


class RunNotFound(Exception):
    pass


def find(home: Path, ref: str) -> RunDir:
    """A run by its id or an unambiguous prefix of it."""
    runs = all_runs(home)
    exact = [r for r in runs if r.id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run matches {ref!r} in {runs_root(home)} (lftop ls lists them)")
    raise RunNotFound(f"{ref!r} is ambiguous: " + ", ".join(r.id for r in matches))
