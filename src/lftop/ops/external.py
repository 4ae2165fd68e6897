"""Runs lftop did not start: list them with the GPUs they hold, stop a whole one (orphaned ranks too), and resume
one lftop stopped as a new lftop run from its newest complete checkpoint.

Stopping one leaves a record, a run directory `ext-<pid>` in state stopped, so that `ls` and `show` still know it
and `resume` knows its arguments, working directory and interpreter.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from lftop.gpu import nvml
from lftop.ops.actions import Refused, launch
from lftop.ops.plan import plan
from lftop.profiles import ProfileError, lfconfig
from lftop.profiles.profile import validate
from lftop.runs import checkpoints, external, rundir
from lftop.runs.external import ExternalRun
from lftop.runs.process import terminate
from lftop.runs.rundir import RunDir
from lftop.runs.state import RunState


def is_external(ref: str) -> bool:
    return ref.startswith(external.PREFIX)


def runs(snapshot: nvml.GpuSnapshot | None = None) -> list[ExternalRun]:
    """The caller's live external runs, each with the GPUs its processes hold when NVML can tell."""
    found = external.find()
    if not found:
        return found
    snapshot = snapshot or nvml.shared().read()
    if snapshot.error:
        return found
    return [dataclasses.replace(run, gpus=tuple(d.index for d in snapshot.devices
                                                if any(p.pid in run.pids for p in d.processes))) for run in found]


def find(ref: str) -> ExternalRun:
    """The live external run `ref` (ext-<pid>), with its GPUs."""
    run = next((r for r in runs() if r.id == ref), None)
    if run is None:
        raise Refused(f"no live external run {ref} (lftop ls lists them; one lftop stopped is a run: lftop show {ref})")
    return run


def stop(run: ExternalRun, home: Path, grace: float = 10.0) -> tuple[RunDir, int]:
    """End every process of `run` (SIGTERM, SIGKILL after `grace` s), then record it as a stopped run."""
    procs = external.processes(run)
    terminate(procs, grace)
    record = _record(run, home)
    record.event("stopped", processes=len(procs), by="lftop", external=True)
    record.set_state(RunState.STOPPED)
    return record, len(procs)


def _record(run: ExternalRun, home: Path) -> RunDir:
    root = rundir.make_runs_root(home)
    path, n = root / run.id, 1
    while True:
        try:
            path.mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
            path = root / f"{run.id}-{n}"
    os.chmod(path, 0o700)
    record = RunDir(path)
    record.write_meta({
        "id": record.id, "external": True, "profile": run.config or "", "command": run.command,
        "args": run.args, "env": {k: v for k, v in os.environ.items() if k in lfconfig.SWITCHES},
        "cwd": run.cwd, "output_dir": run.output_dir or "", "nproc": run.nproc, "gpus": run.cuda_visible_devices,
        "python": run.python, "created": run.root.create_time, "stopped": time.time(),
    })
    return record


def resume(record: RunDir, home: Path) -> tuple[RunDir, int]:
    """Bring a stopped external run under lftop: a new run from the newest complete checkpoint in its output_dir,
    with its arguments, working directory, interpreter, ranks and GPUs; returns the new run and the step."""
    if why := record.problem():
        raise Refused(f"{record.id}: {why}")
    meta = record.meta()
    if adopted := meta.get("adopted_by"):
        raise Refused(f"{record.id} was resumed already as {adopted}: `lftop resume {adopted}` continues it")
    output_dir = Path(meta["output_dir"])
    done = checkpoints.complete(output_dir) if meta["output_dir"] else []
    if not done:
        raise Refused(f"{record.id}: no complete checkpoint in {output_dir or 'its output_dir'}; launch its config "
                      "to start it afresh")
    step, checkpoint = done[-1]
    args = {**meta["args"], "output_dir": str(output_dir), "resume_from_checkpoint": str(checkpoint)}
    args.pop("overwrite_output_dir", None)  # it would delete trainer_log.jsonl: the history
    raw = lfconfig.from_args(args, Path(meta.get("profile") or record.path / "run.json"), meta["env"])
    raw.tables["launch"].update({k: v for k, v in (("python", meta.get("python")), ("nproc", meta.get("nproc")),
                                                   ("gpus", meta.get("gpus"))) if v is not None})
    raw.tables["profile"] = {"description": f"resumed from the external run {record.id}"}
    try:
        profile = dataclasses.replace(validate(raw), path=Path(meta.get("profile") or "external"))
    except ProfileError as exc:
        raise Refused(f"{record.id}: its arguments do not validate: {exc}") from None
    run = launch(plan(profile, home=home), home, cwd=Path(meta["cwd"]))
    run.event("adopted", external=record.id, step=step, checkpoint=str(checkpoint))
    run.event("checkpoint", step=step, path=str(checkpoint))  # its starting point is its own to resume from
    record.write_meta({**meta, "adopted_by": run.id})
    record.event("resumed as", run=run.id, step=step)
    return run, step
