"""The steps a Slurm run's batch script runs on the head node: `begin`, `watch`, `warned` (its USR1 trap) and
`finish`.

    python -m lftop.runs.engines.slurm_step begin RUN_DIR      records the job's start, prints a free port
    python -m lftop.runs.engines.slurm_step watch RUN_DIR      stall checks while the nodes train (ended by the script)
    python -m lftop.runs.engines.slurm_step warned RUN_DIR     Slurm's warning: checkpoint, then requeue
    python -m lftop.runs.engines.slurm_step finish RUN_DIR RC  records how it ended; requeues; exits RC
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from lftop.runs import checkpoints
from lftop.runs.rundir import RunDir
from lftop.runs.stalls import StallWatch
from lftop.runs.state import RunState
from lftop.runs.supervisor import free_port, record_exit


def _job() -> str:
    return os.environ.get("SLURM_JOB_ID", "")


def resume_from_newest(run: RunDir) -> tuple[int, str] | None:
    """Point run.json's arguments at the run's own newest complete checkpoint, if it has one: (step, path)."""
    meta = run.meta()
    own = checkpoints.own(run.events(), Path(meta["output_dir"]))
    if not own:
        return None
    step, path = own[-1]
    meta["args"] = {**meta["args"], "resume_from_checkpoint": str(path)}
    meta["args"].pop("overwrite_output_dir", None)  # it would delete trainer_log.jsonl: the history
    run.write_meta(meta)
    return step, str(path)


def begin(run: RunDir) -> int:
    """The job has started: say so and print the rendezvous port. Slurm restarted it itself (a preemption or a
    node failure): resume. A job the run no longer counts on (Slurm requeued it after lftop submitted the next
    one): print nothing, and the batch script ends without training."""
    jobs = run.meta().get("jobs", [])
    if _job() in jobs[:-1]:  # (one not listed yet is the one being submitted)
        run.event("superseded", job=_job(), current=jobs[-1])
        return 0
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts and (found := resume_from_newest(run)):
        run.event("requeued", by="slurm", job=_job(), restarts=restarts, step=found[0], checkpoint=found[1])
    run.event("job started", job=_job(), nodelist=os.environ.get("SLURM_JOB_NODELIST"), restarts=restarts)
    run.set_state(RunState.STARTING)
    print(free_port())
    return 0


def watch(run: RunDir) -> int:
    """Stall checks for the job's life, as the local supervisor makes them: a `stalled` event, and the notify
    command, for a run whose steps stop. The batch script ends it when the nodes are done."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # Slurm's warning is the batch shell's (scancel --full too)
    stalls = StallWatch.of(run)
    while True:
        time.sleep(stalls.period)
        try:
            stalls.tick()
        except OSError:  # the shared filesystem, briefly unreachable: the next check tries again
            continue


def warned(run: RunDir) -> int:
    """USR1 from Slurm: ask the ranks to checkpoint and end (unless a pause or stop is asked already)."""
    if run.control() == "":
        run.request("requeue")
    run.event("requeue requested", job=_job(), why="USR1 from Slurm: time limit near, or preemption")
    return 0


def finish(run: RunDir, rc: int) -> int:
    """Record how the job ended and tell the notify command; after a checkpoint for the warning signal, submit the
    next job to resume."""
    if rc == 0 and run.control() == "requeue" and run.recorded_state() == RunState.PAUSED:
        found = resume_from_newest(run)
        if found is not None:
            from lftop.runs.engines.slurm import SlurmEngine

            run.clear_control()
            run.event("requeued", by="lftop", job=_job(), step=found[0], checkpoint=found[1])
            run.set_state(RunState.STARTING)
            SlurmEngine().start(run, requeue_of=_job())
            return 0
    record_exit(run, rc, wait_notify=True)  # the job's end would kill a detached notify command
    return rc


def main(argv: list[str]) -> int:
    step, run = argv[0], RunDir(Path(argv[1]))
    if step == "begin":
        return begin(run)
    if step == "watch":
        return watch(run)
    if step == "warned":
        return warned(run)
    if step == "finish":
        return finish(run, int(argv[2]))
    raise SystemExit(f"unknown step {step!r}: begin, watch, warned or finish")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
