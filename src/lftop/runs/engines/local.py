"""The local engine: the run's supervisor in a new session on this machine, one process or torchrun under it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lftop.runs.engines import Live
from lftop.runs.process import ProcessRef, terminate, tree
from lftop.runs.rundir import RunDir

WORKER = Path(__file__).resolve().parent.parent.parent / "worker.py"


def training_command(python: str | None, run_dir: str | os.PathLike[str], nproc: int, distributed: bool) -> list[str]:
    """One process, or torchrun (`python -m torch.distributed.run`, no PATH lookup) with `nproc` ranks.

    `{port}` is filled in by the supervisor with a free port when it starts the command."""
    python = python or sys.executable
    if nproc == 1 and not distributed:
        return [python, "-u", str(WORKER), str(run_dir)]
    return [
        python, "-u", "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", "{port}", str(WORKER), str(run_dir),
    ]


def spawn(run: RunDir, module: str) -> None:
    """Start `python -m module RUN_DIR` in a new session, output to training.log, and record it as the run's
    process: nothing of it is tied to this terminal or this process."""
    with run.open_log() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(run.path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            cwd=run.path, env={**os.environ, "LFTOP_RUN_ID": run.id},
        )
    ref = ProcessRef.of(proc.pid)
    meta = run.meta()
    meta["pid"], meta["create_time"] = ref.pid, ref.create_time
    run.write_meta(meta)


class LocalEngine:
    name = "local"

    def start(self, run: RunDir) -> None:
        """Start the run's supervisor (lftop.runs.supervisor) detached."""
        spawn(run, "lftop.runs.supervisor")

    def request_pause(self, run: RunDir) -> None:
        run.request("pause")

    def stop(self, run: RunDir, grace: float) -> int:
        """SIGTERM the whole tree (torchrun workers in their own sessions too), SIGKILL after `grace`."""
        procs = tree(run.process_ref(), run.id)
        run.request("stop")
        terminate(procs, grace)
        late = [p for p in tree(run.process_ref(), run.id) if p.pid not in {q.pid for q in procs}]
        terminate(late, grace)  # a child started while the first ones were being stopped
        return len(procs) + len(late)

    def live(self, run: RunDir) -> Live:
        ref = run.process_ref()
        return Live(alive=ref is not None and ref.alive(), process=ref)
