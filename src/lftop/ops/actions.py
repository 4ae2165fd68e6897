"""Launch, pause, resume and stop: each checks everything it needs before it changes anything on disk."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from lftop.ops import queue as queue_mod
from lftop.ops.plan import Plan, place_run
from lftop.profiles import convert
from lftop.profiles.launch import check_python
from lftop.runs import checkpoints, engines, rundir
from lftop.runs.engines.local import training_command
from lftop.runs.rundir import RunDir, home_lock
from lftop.runs.state import ACTIVE, FINAL, RunState
from lftop.runs.status import RunStatus, status

ASIDE = "set-aside-"  # folders inside an output_dir holding an earlier run's files


class Refused(Exception):
    """lftop will not do this now; the message says why and what to do instead."""


class HoldsCheckpoints(Refused):
    """The output_dir holds an earlier run's checkpoints or model: resume `owner`, or start fresh."""

    def __init__(self, message: str, owner: str | None):
        super().__init__(message)
        self.owner = owner


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
        if other.id == but or not isinstance(other_dir, str) or other.problem() is not None:
            continue  # a file another user could have planted never blocks a launch
        if Path(other_dir).resolve() == output_dir and status(other).alive:
            return other
    return None


def _in(cwd: Path, python: str) -> str:
    """A relative interpreter path as the supervisor will see it: from the run's working directory."""
    return str(cwd / python) if os.sep in python and not os.path.isabs(python) else python


def _check_interpreter(python: str | None) -> None:
    if python is not None and (why := check_python(python)):
        raise Refused(f"[launch] python: {why}")


def _launch_table(profile) -> dict:
    return {**dataclasses.asdict(profile.launch), "sbatch": list(profile.launch.sbatch)}


def launch(plan: Plan, home: Path, fresh: bool = False, accept_oom: bool = False, queue: bool = False,
           cwd: Path | None = None) -> RunDir:
    """Create the run directory and start the run detached on the plan's placement; returns at once.

    `fresh` starts over in an output_dir that holds checkpoints (an explicit `resume_from_checkpoint` continues
    them); `accept_oom` launches past an OOM verdict; `queue` waits (in a detached process of the run's own) until
    the run fits its GPUs, in queue order; `cwd` is where relative paths are read (default: here)."""
    profile = plan.profile
    if profile.abstract:
        raise Refused(f"{profile.path} is a base for other profiles (abstract = true); launch one that extends it")
    if plan.placement is None:
        raise Refused(plan.problem or "no GPUs could be chosen for this run")
    if plan.verdict == "oom" and not (accept_oom or queue):
        raise PredictedOOM(plan)
    if queue and profile.launch.engine != "local":
        raise Refused(f"--queue waits for this machine's GPUs; a {profile.launch.engine} run waits in its scheduler's "
                      "queue instead: launch it without --queue")
    _check_interpreter(profile.launch.python)
    cwd = cwd or Path.cwd()
    args = profile.args()
    output_dir = _resolved_output_dir(args["output_dir"], cwd)
    placement = plan.placement
    with home_lock(home):
        if busy := _busy(home, output_dir):
            raise Refused(f"{output_dir} is in use by live run {busy.id}; pick another output_dir or stop it")
        done = checkpoints.all_checkpoints(output_dir)
        resuming = isinstance(args.get("resume_from_checkpoint"), str)
        if (done or checkpoints.holds_final_model(output_dir)) and not fresh and not resuming:
            what = ", ".join(p.name for _, p in done) or "a finished model"
            owner = _owner(home, output_dir)
            hint = f"`lftop resume {owner.id}` continues them" if owner else "set `resume_from_checkpoint` to continue them"
            raise HoldsCheckpoints(f"{output_dir} already holds {what}: {hint}, or pass --force to start fresh "
                                   "(lftop sets the older files aside, it deletes nothing)", owner.id if owner else None)
        if fresh and not resuming and output_dir.is_dir() and any(not p.name.startswith(ASIDE) for p in output_dir.iterdir()):
            set_aside(home, output_dir)
        run = rundir.create(home, profile.name)
        with run.lock():
            run.write_meta({
                "id": run.id, "profile": str(profile.path), "profile_train": profile.train,
                "python": profile.launch.python, "launch": _launch_table(profile), "description": profile.description,
                "engine": profile.launch.engine, "args": args, "overrides": profile.overrides, "command": [], "env": {},
                "cwd": str(cwd), "output_dir": str(output_dir), "created": time.time(),
            })
            rundir.write_atomic(run.path / "args.yaml", convert.to_yaml(args))
            if queue and (reason := queue_mod.blocking(plan, home, run)):
                run.event("queued", reason=reason)
                run.set_state(RunState.QUEUED)
                queue_mod.spawn_waiter(run)
                return run
            place_run(run, plan)
            meta = run.meta()
            run.event("launched", command=meta["command"], gpus=placement.cuda_visible_devices, nproc=placement.nproc)
            run.set_state(RunState.STARTING)
            engines.get(profile.launch.engine).start(run)
    return run


def _owner(home: Path, output_dir: Path) -> RunDir | None:
    """The newest of the caller's runs that trained in `output_dir`."""
    mine = [r for r in rundir.all_runs(home) if r.problem() is None
            and isinstance(d := r.meta().get("output_dir"), str) and Path(d).resolve() == output_dir]
    return max(mine, key=lambda r: r.meta().get("created") or 0, default=None)


def set_aside(home: Path, output_dir: Path) -> Path:
    """Move everything in `output_dir` into a new `set-aside-<time>` folder inside it, and point the runs that
    trained there at it: their checkpoints, logs and records stay theirs, and a fresh start mixes with none."""
    aside = output_dir / f"{ASIDE}{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while aside.exists():
        n += 1
        aside = aside.with_name(f"{ASIDE}{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    aside.mkdir()
    for entry in list(output_dir.iterdir()):
        if not entry.name.startswith(ASIDE):
            entry.rename(aside / entry.name)
    for run in rundir.all_runs(home):
        meta = run.meta()
        if run.problem() is None and isinstance(d := meta.get("output_dir"), str) and Path(d).resolve() == output_dir:
            meta["output_dir"] = str(aside)
            meta["args"] = {**meta["args"], "output_dir": str(aside)}
            run.write_meta(meta)
            run.event("set aside", output_dir=str(aside), reason="a fresh start into its output_dir")
    return aside


def _world(run: RunDir, meta: dict, gpus: int | None, overrides: dict) -> dict:
    """Run.json changes for resuming on `gpus` GPUs (ranks): the effective batch is kept by recomputing
    gradient_accumulation_steps, or the resume is refused when that cannot divide evenly."""
    old = meta.get("nproc") or 1
    if gpus is None or gpus == old:
        return {}
    if meta.get("engine", "local") != "local":
        raise Refused(f"{run.id}: --gpus changes a local run's ranks; a {meta['engine']} run's size is its "
                      "profile's nodes x nproc_per_node")
    accumulation = overrides.get("gradient_accumulation_steps", meta["args"].get("gradient_accumulation_steps", 1))
    if type(accumulation) is not int or accumulation < 1:
        raise Refused(f"{run.id}: gradient_accumulation_steps is {accumulation!r} in run.json, not a count")
    total = accumulation * old
    if total % gpus:
        raise Refused(f"{run.id}: {old} rank(s) x {accumulation} accumulation steps = {total} does not divide by "
                      f"{gpus}: the effective batch cannot be kept; choose a divisor of {total}")
    visible = meta.get("gpus")
    if visible != "":  # on GPUs: the least-used ones now (on the CPU, ranks only)
        from lftop.gpu import nvml

        visible = ",".join(map(str, nvml.least_used(gpus)))
    env = {**meta["env"]}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    distributed = bool(meta["args"].get("deepspeed"))
    python = meta.get("python") or meta["command"][0]
    return {"nproc": gpus, "gpus": visible, "env": env,
            "command": training_command(python, run.path, gpus, distributed),
            "args": {"gradient_accumulation_steps": total // gpus}}


def resume(run: RunDir, home: Path, overrides: dict | None = None, source: Path | None = None,
           gpus: int | None = None) -> tuple[RunDir, int]:
    """Relaunch a run from its own newest complete checkpoint (or `source`, any complete checkpoint).

    `overrides` change arguments on the way: an OOM fix, or `max_steps`/`num_train_epochs` to continue a
    completed run past its end; `gpus` resumes on another number of GPUs (ranks) with the same effective batch.
    Everything is checked before anything is written."""
    _trusted(run)
    overrides = dict(overrides or {})
    continuing = "max_steps" in overrides or "num_train_epochs" in overrides
    with run.lock():
        current = status(run)
        if current.alive:
            raise Refused(f"{run.id} is {current.state}: it is still running")
        if current.state == RunState.COMPLETED and not continuing:
            raise Refused(f"{run.id} completed; `lftop resume {run.id} --max-steps N` (or --epochs X) trains on")
        meta = run.meta()
        cwd = Path(meta.get("cwd") or "/")
        if not cwd.is_dir():
            raise Refused(f"{run.id}: its working directory {cwd} is gone; recreate it (relative paths in the "
                          "profile are read from there)")
        if not meta["command"]:
            raise Refused(f"{run.id} never started (it was cancelled in the queue): launch its profile again")
        _check_interpreter(_in(cwd, meta.get("python") or meta["command"][0]))
        world = _world(run, meta, gpus, overrides)
        with home_lock(home):
            output_dir = Path(meta["output_dir"]).resolve()
            if busy := _busy(home, output_dir, but=run.id):
                raise Refused(f"{output_dir} is in use by live run {busy.id}")
            step, path = _resume_point(run, output_dir, source)
            if "max_steps" in overrides and overrides["max_steps"] <= step:
                raise Refused(f"{run.id} is at step {step}: --max-steps must be more than that")
            args = {**meta["args"], **overrides, **world.pop("args", {}), "resume_from_checkpoint": str(path)}
            args.pop("overwrite_output_dir", None)  # it would delete trainer_log.jsonl: the history
            if "num_train_epochs" in overrides:
                args.pop("max_steps", None)  # max_steps wins over epochs in the Trainer
            meta.update(world, args=args)
            run.write_meta(meta)
            rundir.write_atomic(run.path / "args.yaml", convert.to_yaml(args))
            run.clear_control()
            run.event("resumed", step=step, checkpoint=str(path), overrides=overrides, nproc=meta.get("nproc"),
                      gradient_accumulation_steps=args.get("gradient_accumulation_steps"))
            run.set_state(RunState.STARTING)
            _engine(run).start(run)
    return run, step


def _resume_point(run: RunDir, output_dir: Path, source: Path | None) -> tuple[int, Path]:
    if source is not None:
        source = source.expanduser().resolve()
        step = checkpoints.step_of(source)
        if step is None:
            raise Refused(f"{source} is not a complete checkpoint (no readable trainer_state.json)")
        return step, source
    own = checkpoints.own(run.events(), output_dir)
    if own:
        return own[-1]
    others = checkpoints.complete(output_dir)
    hint = f"; {output_dir} holds {others[-1][1].name}, which this run did not write: `--from {others[-1][1]}` " \
           "resumes from it" if others else ""
    raise Refused(f"{run.id}: no complete checkpoint of its own in {output_dir}{hint}")


def pause(run: RunDir) -> None:
    """Ask a running run to save a checkpoint at its next step end and exit."""
    _trusted(run)
    current = status(run)
    if current.state == RunState.QUEUED:
        raise Refused(f"{run.id} is queued: it has not started (lftop stop cancels it)")
    if not current.alive or current.state not in ACTIVE:
        raise Refused(f"{run.id} is {current.state}: only a running run can pause")
    run.event("pause requested")
    _engine(run).request_pause(run)


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
