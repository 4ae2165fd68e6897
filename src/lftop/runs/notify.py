"""Notifications with no app open: `[notify] command = ["prog", "arg"]` in the home's config.toml runs for a
run's completed, failed, paused, stalled and started-from-queue events, with the event as one JSON object on
its standard input. Fired by the run's own detached process; a failing or hanging command is killed after
10 s and recorded as an event; it runs in a detached process of its own, never holding the run up.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
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


def send(run: RunDir, event: str, *, wait: bool = False, **fields) -> None:
    """Run the notify command (if any) for `event` in a detached process of its own (`python -m
    lftop.runs.notify RUN_DIR EVENT_JSON`), which kills it after TIMEOUT s: the caller never waits for it and
    may exit at once. `wait`: run it here, up to TIMEOUT s, for a caller whose end ends every process it started
    (the last step of a Slurm job: Slurm then kills what is left of the job)."""
    found = command(run.path.parent.parent)
    if found is None:
        return
    if wait:
        _run(run, found, {"run": run.id, "event": event, **fields})
        return
    payload = json.dumps({"run": run.id, "event": event, **fields})
    env = {k: v for k, v in os.environ.items() if k != "LFTOP_RUN_ID"}  # not a process of the run: stop leaves it
    subprocess.Popen([sys.executable, "-m", "lftop.runs.notify", str(run.path), payload], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                     env=env)


def main(run_dir: str, payload: str) -> int:
    run = RunDir(Path(run_dir))
    found = command(run.path.parent.parent)
    if found is not None:
        _run(run, found, json.loads(payload))
    return 0


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
