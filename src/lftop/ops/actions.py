"""Launch, pause, resume and stop: each checks everything it needs before it changes anything on disk."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from lftop.ops.plan import Plan
from lftop.profiles import convert
from lftop.runs import checkpoints, engines, rundir
from lftop.runs.engines.local import training_command
from lftop.runs.rundir import RunDir, home_lock
from lftop.runs.state import ACTIVE, FINAL, RunState
from lftop.runs.status import RunStatus, status


class Refused(Exception):
    """lftop will not do this now; the message says why and what to do instead."""


class PredictedOOM(Refused):
    """The estimate says the run will not fit; `plan` holds the breakdown and the suggestions."""

    def __init__(self, plan: Plan):
        super().__init__("predicted out of memory; apply a suggestion to the profile, or launch anyway with --force")
        self.plan = plan


def _engine(run: RunDir) -> engines.Engine:
    return engines.get(run.meta().get("engine"))


def _trusted(run: RunDir) -> None:
    if why := run.problem():
        raise Refused(f"{run.id}: {why}")


def _resolved_output_dir(value: object, cwd: Path) -> Path:
    path = Path(str(value)).expanduser()
    return (path if path.is_absolute() else cwd / path).resolve()


def _busy(home: Path, output_dir: Path, but: str | None = None) -> RunDir | None:
    """A live run writing into `output_dir` (compared resolved: symlinks and `..` name the same folder)."""
    for other in rundir.all_runs(home):
        other_dir = other.meta().get("output_dir")
        if other.id == but or not isinstance(other_dir, str):
            continue
        if Path(other_dir).resolve() == output_dir and status(other).alive:
            return other
    return None


def _check_interpreter(python: str | None) -> None:
    if python is None:
        return
    found = shutil.which(python)
    if found is None or not os.access(found, os.X_OK):
        raise Refused(f"[launch] python = {python!r} is not an executable (check the path to the environment "
                      "that has llamafactory)")


def launch(plan: Plan, home: Path, fresh: bool = False, accept_oom: bool = False) -> RunDir:
    """Create the run directory and start the run detached on the plan's placement; returns at once.

    `fresh` starts over in an output_dir that holds checkpoints; `accept_oom` launches past an OOM verdict."""
    profile = plan.profile
    if profile.abstract:
        raise Refused(f"{profile.path} is a base for other profiles (abstract = true); launch one that extends it")
    if plan.placement is None:
        raise Refused(plan.problem or "no GPUs could be chosen for this run")
    if plan.verdict == "oom" and not accept_oom:
        raise PredictedOOM(plan)
    _check_interpreter(profile.launch.python)
    cwd = Path.cwd()
    args = profile.args()
    output_dir = _resolved_output_dir(args["output_dir"], cwd)
    placement = plan.placement
    with home_lock(home):
        if busy := _busy(home, output_dir):
            raise Refused(f"{output_dir} is in use by live run {busy.id}; pick another output_dir or stop it")
        done = checkpoints.all_checkpoints(output_dir)
        if (done or checkpoints.holds_final_model(output_dir)) and not fresh:
            what = ", ".join(p.name for _, p in done) or "a finished model"
            owner = next((r.id for r in rundir.all_runs(home)
                          if isinstance(d := r.meta().get("output_dir"), str) and Path(d).resolve() == output_dir), None)
            hint = f"`lftop resume {owner}` continues them" if owner else "set `resume_from_checkpoint` to continue them"
            raise Refused(f"{output_dir} already holds {what}: {hint}, or pass --force to start over")
        if fresh and (done or checkpoints.holds_final_model(output_dir)):
            args["overwrite_output_dir"] = True  # a deliberate fresh start; LLaMA-Factory would auto-resume otherwise
        run = rundir.create(home, profile.name)
        with run.lock():
            distributed = bool(profile.train.get("deepspeed"))  # DeepSpeed needs a distributed launch even alone
            command = training_command(profile.launch.python, run.path, placement.nproc, distributed)
            env = {"PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "LFTOP_RUN_ID": run.id,
                   **profile.launch.env}
            if placement.cuda_visible_devices is not None:
                env["CUDA_VISIBLE_DEVICES"] = placement.cuda_visible_devices
            run.write_meta({
                "id": run.id, "profile": str(profile.path), "profile_train": profile.train,
                "description": profile.description, "engine": profile.launch.engine, "args": args,
                "command": command, "env": env, "cwd": str(cwd), "nproc": placement.nproc,
                "gpus": placement.cuda_visible_devices, "output_dir": str(output_dir), "created": time.time(),
                "predicted_gib": round(plan.report.per_gpu_gib, 2) if plan.report else None,
            })
            rundir.write_atomic(run.path / "args.yaml", convert.to_yaml(args))
            run.event("launched", command=command, gpus=placement.cuda_visible_devices, nproc=placement.nproc)
            run.set_state(RunState.STARTING)
            engines.get(profile.launch.engine).start(run)
    return run


def resume(run: RunDir, home: Path, overrides: dict | None = None) -> tuple[RunDir, int]:
    """Relaunch a paused, failed, stopped or lost run from its newest complete checkpoint.

    `overrides` change arguments on the way (an OOM fix such as a smaller micro-batch)."""
    _trusted(run)
    with run.lock():
        current = status(run)
        if current.alive:
            raise Refused(f"{run.id} is {current.state}: it is still running")
        if current.state == RunState.COMPLETED:
            raise Refused(f"{run.id} completed; raise num_train_epochs or max_steps in a new profile to train on")
        meta = run.meta()
        cwd = Path(meta.get("cwd") or "/")
        if not cwd.is_dir():
            raise Refused(f"{run.id}: its working directory {cwd} is gone; recreate it (relative paths in the "
                          "profile are read from there)")
        _check_interpreter(meta["command"][0] if meta["command"] != [] else None)
        output_dir = Path(meta["output_dir"]).resolve()
        newest = checkpoints.newest_complete(output_dir)
        if newest is None:
            raise Refused(f"{run.id}: no complete checkpoint in {output_dir} (none has trainer_state.json)")
        with home_lock(home):
            if busy := _busy(home, output_dir, but=run.id):
                raise Refused(f"{output_dir} is in use by live run {busy.id}")
            step, path = newest
            meta["args"] = {**meta["args"], **(overrides or {}), "resume_from_checkpoint": str(path)}
            meta["args"].pop("overwrite_output_dir", None)  # it would delete trainer_log.jsonl: the history
            run.write_meta(meta)
            rundir.write_atomic(run.path / "args.yaml", convert.to_yaml(meta["args"]))
            run.clear_control()
            run.event("resumed", step=step, checkpoint=str(path), overrides=overrides or {})
            run.set_state(RunState.STARTING)
            _engine(run).start(run)
    return run, step


def pause(run: RunDir) -> None:
    """Ask a running run to save a checkpoint at its next step end and exit."""
    _trusted(run)
    current = status(run)
    if not current.alive or current.state not in ACTIVE:
        raise Refused(f"{run.id} is {current.state}: only a running run can pause")
    _engine(run).request_pause(run)
    run.event("pause requested")


def stop(run: RunDir, grace: float = 10.0) -> int:
    """End the run's whole process tree (SIGKILL after `grace` s); how many processes were ended."""
    if not grace >= 0 or grace == float("inf"):
        raise Refused(f"--grace must be a finite number of seconds >= 0, not {grace}")
    _trusted(run)
    with run.lock():
        run.event("stop requested", grace=grace)
        count = _engine(run).stop(run, grace)
        if run.recorded_state() not in FINAL:  # no supervisor recorded it (killed, or none was running)
            run.event("stopped", processes=count)
            run.set_state(RunState.STOPPED)
        return count


def wait_settled(run: RunDir, timeout: float, poll: float = 0.5) -> RunStatus:
    """The run's status once nothing of it is alive any more, or when `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while (current := status(run)).alive and time.monotonic() < deadline:
        time.sleep(poll)
    return current
