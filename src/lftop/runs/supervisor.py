"""The detached parent of a local run: starts the training command, waits, and records how it ended.

Started by the local engine as `python -m lftop.runs.supervisor RUN_DIR` in a new session, with stdout and
stderr already appended to training.log. It survives the launching lftop, the SSH link and tmux.
Each ending is written as its event first, then its state, so a reader that sees the state finds the event.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from lftop.logs.failures import classify_exit
from lftop.runs import notify
from lftop.runs.rundir import RunDir
from lftop.runs.stalls import StallWatch
from lftop.runs.state import FINAL, RunState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fail(run: RunDir, kind: str, message: str, rc: int | None = None) -> None:
    run.event("failed", kind=kind, rc=rc, message=message)
    run.set_state(RunState.FAILED)


def main(run_dir: str) -> int:
    run = RunDir(Path(run_dir))
    meta = run.meta()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    port = str(free_port())
    command = [port if part == "{port}" else part for part in meta["command"]]
    started: list[subprocess.Popen] = []
    asked: list[int] = []

    def forward(signum, _frame):  # installed before the child starts: a stop in between is never lost
        run.request("stop")
        asked.append(signum)
        for child in started:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        started.append(subprocess.Popen(command, env={**os.environ, **meta["env"]}, stdin=subprocess.DEVNULL,
                                        cwd=meta.get("cwd") or None))
    except OSError as exc:  # a missing interpreter, a working directory removed since the launch
        where = exc.filename or command[0]
        _fail(run, "start", f"cannot start {command[0]}: {exc.strerror} ({where})")
        run.event("exited", rc=None)
        return 0
    if asked:
        started[0].send_signal(asked[-1])
    record_exit(run, _watch(run, started[0]))
    return 0


def record_exit(run: RunDir, rc: int, wait_notify: bool = False) -> None:
    """How the training command ended, unless the worker or `stop` already said (event, then state); then the
    notify command hears it (`wait_notify`: before this returns, see notify.send)."""
    state = run.recorded_state()
    if run.control() == "stop":
        if state not in FINAL:
            run.event("stopped", rc=rc)
            run.set_state(RunState.STOPPED)
    elif rc == 0 and state not in FINAL:
        run.event("completed", rc=rc)
        run.set_state(RunState.COMPLETED)
    elif rc != 0 and state != RunState.FAILED:
        kind, message = classify_exit(rc, run.log)
        _fail(run, kind, message, rc)
    run.event("exited", rc=rc)
    _notify_end(run, wait_notify)


def _watch(run: RunDir, child: subprocess.Popen) -> int:
    """Wait for the training command, checking for stalls every few seconds; its exit code."""
    watch = StallWatch.of(run)
    while True:
        try:
            return child.wait(timeout=watch.period)
        except subprocess.TimeoutExpired:
            watch.tick()


def _notify_end(run: RunDir, wait: bool) -> None:
    """The notify command for how the run ended: completed, failed (with the kind) or paused."""
    state = run.recorded_state()
    if state not in (RunState.COMPLETED, RunState.FAILED, RunState.PAUSED):
        return
    last = next((e for e in reversed(run.events()) if e.get("event") == str(state)), {})
    notify.send(run, str(state), wait=wait, step=last.get("step"), state=str(state),
                reason=last.get("kind") or last.get("message"), message=last.get("message"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
