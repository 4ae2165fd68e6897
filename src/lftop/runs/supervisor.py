"""The detached parent of a run: starts the training command, waits, and records how it ended.

Started by the launcher as `python -m lftop.runs.supervisor RUN_DIR` in a new session, with stdout and
stderr already appended to training.log. It survives the launching lftop, the SSH link and tmux.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lftop.runs.launcher import _free_port
from lftop.runs.rundir import FINAL, RunDir
from lftop.logs.failures import classify_exit


def main(run_dir: str) -> int:
    run = RunDir(Path(run_dir))
    meta = run.meta()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    port = str(_free_port())
    command = [part.replace("{port}", port) for part in meta["command"]]
    child = subprocess.Popen(command, env={**os.environ, **meta["env"]}, stdin=subprocess.DEVNULL)

    def forward(signum, _frame):
        run.request("stop")
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    rc = child.wait()
    state = run.state()
    if run.control() == "stop":
        run.set_state("stopped")
    elif rc == 0 and state not in FINAL:
        run.set_state("completed")
        run.event("completed", rc=rc)
    elif rc != 0 and state != "failed":
        kind, message = classify_exit(rc, run.log)
        run.set_state("failed")
        run.event("failed", kind=kind, rc=rc, message=message)
    run.event("exited", rc=rc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
