"""Notifications with no app open: `[notify] command = ["prog", "arg"]` in the home's config.toml runs for a
run's completed, failed, paused, stalled and started-from-queue events, with the event as one JSON object on
its standard input. Fired by the run's own detached process; a failing or hanging command is killed after
10 s and recorded as an event, never holding the run up.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from pathlib import Path

from lftop.profiles import tomlfile
from lftop.runs.rundir import RunDir

TIMEOUT = 10.0
EVENTS = ("completed", "failed", "paused", "stalled", "started")


def argv(value: object) -> tuple[str, ...] | None:
    """A notify command as an argv: a non-empty list of non-empty strings (never a shell string); else None."""
    if isinstance(value, list) and value and all(isinstance(v, str) and v and "\0" not in v for v in value):
        return tuple(value)
    return None


def command(home: Path) -> tuple[str, ...] | None:
    """The home's [notify] command, only from a config.toml this user owns and nobody else can write."""
    path = home / "config.toml"
    try:
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    try:
        config = tomlfile.read(path)[0]
    except (tomlfile.Unreadable, tomlfile.TomlError):
        return None
    table = config.get("notify")
    return argv(table.get("command")) if isinstance(table, dict) else None


def send(run: RunDir, event: str, wait: bool = True, **fields) -> None:
    """Run the notify command (if any) for `event`; with `wait` False, in a thread of its own."""
    found = command(run.path.parent.parent)
    if found is None:
        return
    payload = {"run": run.id, "event": event, **fields}
    if wait:
        _run(run, found, payload)
    else:
        threading.Thread(target=_run, args=(run, found, payload), name="lftop-notify", daemon=True).start()


def _run(run: RunDir, found: tuple[str, ...], payload: dict) -> None:
    try:
        done = subprocess.run(found, input=json.dumps(payload) + "\n", text=True, capture_output=True,
                              timeout=TIMEOUT, start_new_session=True)
    except subprocess.TimeoutExpired:
        run.event("notify failed", command=list(found), reason=f"killed after {TIMEOUT:g} s")
        return
    except OSError as exc:
        run.event("notify failed", command=list(found), reason=f"{exc.strerror}: {exc.filename or found[0]}")
        return
    if done.returncode != 0:
        run.event("notify failed", command=list(found), reason=f"exit {done.returncode}",
                  stderr=done.stderr.strip()[-500:])
