"""Local launcher: start a run detached (setsid), resume it from its newest complete checkpoint, stop it.

One process for one GPU or the CPU, torchrun (`python -m torch.distributed.run`, so no PATH lookup)
with one rank per GPU for several. The detached process is lftop's supervisor, which starts the
training command with output appended to training.log and records how it ended.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lftop.profiles import Profile, convert
from lftop.runs import checkpoints
from lftop.runs.process import ProcessRef, terminate, tree
from lftop.runs.rundir import ACTIVE, RunDir, all_runs, runs_root
from lftop.runs.status import status

WORKER = Path(__file__).resolve().parent.parent / "worker.py"


class LaunchRefused(Exception):
    """Launching now would lose or clash with something; the message says what and what to do instead."""


@dataclass(frozen=True)
class Placement:
    cuda_visible_devices: str | None  # None: inherit
    nproc: int


def place(profile: Profile, gpus: str | None = None) -> Placement:
    """Which GPUs a run gets and how many ranks it starts."""
    spec = gpus if gpus is not None else profile.launch.gpus
    visible: str | None
    if spec is None or spec == "all":
        visible, count = None, _device_count()
    elif isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit() and "," not in spec and gpus is None):
        from lftop.gpu.nvml import least_used

        visible = ",".join(str(i) for i in least_used(int(spec)))
        count = int(spec)
    else:
        visible = str(spec)
        count = len([d for d in visible.split(",") if d.strip()])
    return Placement(visible, profile.launch.nproc or max(count, 1))


def _device_count() -> int:
    from lftop.gpu.nvml import device_count

    return device_count()


def training_command(profile: Profile, run_dir: str | os.PathLike[str], gpus: str | None = None, nproc: int | None = None) -> list[str]:
    python = profile.launch.python or sys.executable
    nproc = nproc or place(profile, gpus).nproc
    if nproc == 1 and not profile.train.get("deepspeed"):  # DeepSpeed needs a distributed launch even alone
        return [python, "-u", str(WORKER), str(run_dir)]
    return [
        python, "-u", "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", "{port}", str(WORKER), str(run_dir),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _new_id(home: Path, name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id, n = f"{name}-{stamp}", 1
    while (runs_root(home) / run_id).exists():
        n += 1
        run_id = f"{name}-{stamp}-{n}"
    return run_id


def _start(run: RunDir) -> ProcessRef:
    """Start the supervisor in a new session; nothing of it is tied to this terminal or this process."""
    with open(run.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lftop.runs.supervisor", str(run.path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            cwd=run.meta().get("cwd") or None, env={**os.environ, "LFTOP_RUN_ID": run.id},
        )
    ref = ProcessRef.of(proc.pid)
    meta = run.meta()
    meta["pid"], meta["create_time"] = ref.pid, ref.create_time
    run.write_meta(meta)
    return ref


def _busy_output_dir(home: Path, output_dir: Path, but: str | None = None) -> RunDir | None:
    for other in all_runs(home):
        if other.id != but and Path(other.meta().get("output_dir", "")) == output_dir and status(other).alive:
            return other
    return None


def _home_lock(home: Path):
    runs_root(home).mkdir(parents=True, exist_ok=True)
    f = open(runs_root(home) / ".launch.lock", "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def launch(profile: Profile, home: Path, gpus: str | None = None, force: bool = False) -> RunDir:
    """Create the run directory and start the run detached; returns at once."""
    args = profile.args()
    output_dir = Path(str(args["output_dir"])).expanduser()
    if not output_dir.is_absolute():
        output_dir = Path.cwd() / output_dir
    with _home_lock(home):
        if busy := _busy_output_dir(home, output_dir):
            raise LaunchRefused(f"{output_dir} is in use by live run {busy.id}; pick another output_dir or stop it")
        done = checkpoints.all_checkpoints(output_dir)
        if (done or checkpoints.holds_final_model(output_dir)) and not force:
            what = ", ".join(p.name for _, p in done) or "a finished model"
            owner = next((r.id for r in all_runs(home) if Path(r.meta().get("output_dir", "")) == output_dir), None)
            hint = f"`lftop resume {owner}` continues them" if owner else "set `resume_from_checkpoint` to continue them"
            raise LaunchRefused(f"{output_dir} already holds {what}: {hint}, or pass --force to start over")
        if force and (done or checkpoints.holds_final_model(output_dir)):
            args["overwrite_output_dir"] = True  # a deliberate fresh start; LLaMA-Factory would auto-resume otherwise
        placement = place(profile, gpus)
        run = RunDir(runs_root(home) / _new_id(home, profile.name))
        run.path.mkdir(parents=True)
        run.set_state("starting")
        command = training_command(profile, run.path, gpus, placement.nproc)
        env = {"PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "LFTOP_RUN_ID": run.id, **profile.launch.env}
        if placement.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = placement.cuda_visible_devices
        run.write_meta({
            "id": run.id, "profile": str(profile.path), "profile_train": profile.train, "description": profile.description,
            "args": args, "command": command, "env": env, "cwd": os.getcwd(), "nproc": placement.nproc,
            "gpus": placement.cuda_visible_devices, "output_dir": str(output_dir), "created": time.time(),
        })
        (run.path / "args.yaml").write_text(convert.to_yaml(args))
        run.event("launched", command=command, gpus=placement.cuda_visible_devices, nproc=placement.nproc)
        _start(run)
    return run


def resume(run: RunDir, home: Path, overrides: dict | None = None) -> tuple[RunDir, int]:
    """Relaunch a paused, failed, stopped or lost run from its newest complete checkpoint.

    `overrides` change arguments on the way (an OOM fix such as a smaller micro-batch).
    """
    with run.lock():
        current = status(run)
        if current.alive:
            raise LaunchRefused(f"{run.id} is {current.state}: it is still running")
        if current.state == "completed":
            raise LaunchRefused(f"{run.id} completed; raise num_train_epochs or max_steps in a new profile to train on")
        meta = run.meta()
        output_dir = Path(meta["output_dir"])
        newest = checkpoints.newest_complete(output_dir)
        if newest is None:
            raise LaunchRefused(f"{run.id}: no complete checkpoint in {output_dir} (none has trainer_state.json)")
        with _home_lock(home):
            if busy := _busy_output_dir(home, output_dir, but=run.id):
                raise LaunchRefused(f"{output_dir} is in use by live run {busy.id}")
            step, path = newest
            meta["args"] = {**meta["args"], **(overrides or {}), "resume_from_checkpoint": str(path)}
            meta["args"].pop("overwrite_output_dir", None)  # it would delete trainer_log.jsonl: the history
            run.write_meta(meta)
            (run.path / "args.yaml").write_text(convert.to_yaml(meta["args"]))
            run.clear_control()
            run.set_state("starting")
            run.event("resumed", step=step, checkpoint=str(path), overrides=overrides or {})
            _start(run)
    return run, step


def pause(run: RunDir) -> None:
    current = status(run)
    if not current.alive or current.state not in ACTIVE:
        raise LaunchRefused(f"{run.id} is {current.state}: only a running run can pause")
    run.request("pause")
    run.event("pause requested")


def stop(run: RunDir, grace: float = 10.0) -> int:
    """SIGTERM the whole tree (torchrun workers in their own sessions too), SIGKILL after `grace`."""
    with run.lock():
        current = status(run)
        procs = tree(current.process, run.id)
        run.request("stop")
        survivors = terminate(procs, grace)
        if current.state in ACTIVE or current.alive:
            run.set_state("stopped")
        run.event("stopped", processes=len(procs), survivors=[p.pid for p in survivors])
        return len(procs)


def to_json(run: RunDir) -> str:
    return json.dumps({"run": run.id, "pid": run.meta().get("pid"), "run_dir": str(run.path)})
