"""The Slurm engine: a batch script in the run directory, submitted with sbatch; torchrun on every node under srun.

The run directory and output_dir must be on a filesystem every node shares: the ranks read run.json and the
control file there, Slurm appends their output to training.log, and checkpoints are read back on resume. Each
node checks that it sees the run directory before training and fails the job with a message if it does not.

The batch script (RUN_DIR/slurm.sh) runs `slurm_step begin` (records the job's start, picks the rendezvous port),
`slurm_step watch` in the background (stall checks, as the local supervisor makes them), then `srun` with one task per node, each `python -m torch.distributed.run --nnodes N --nproc-per-node M
--rdzv-backend c10d --rdzv-endpoint HEAD:PORT worker.py RUN_DIR`, and at the end `slurm_step finish`, which
records how it ended like the local supervisor. Slurm's warning signal (`--signal=B:USR1@SECS`, before the time
limit or on preemption) reaches only the batch shell; its trap writes `requeue` to the control file, the ranks
checkpoint at the next step end as for a pause, and `finish` submits the next job, which resumes from that
checkpoint. Every value that comes from the profile is quoted with shlex: no shell string is built from it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lftop.runs.engines import Live, slurmcli
from lftop.runs.engines.local import WORKER
from lftop.runs.engines.slurm_gpus import NodeGpus
from lftop.runs.process import tagged, terminate
from lftop.runs.rundir import RunDir, write_atomic
from lftop.runs.state import RunState

WARN_SECS = 300  # Slurm's USR1 comes this long before the time limit (a quarter of shorter limits): time to save
SCRIPT = "slurm.sh"
# Each node's task: check that this node sees the run directory, make the torchrun agent immune to USR1 (which
# would kill it and orphan its workers where every process of the job gets the signal), then become torchrun.
NODE_WRAPPER = (
    'test -r "$1/run.json" || { echo "lftop: $1 is not visible on $(hostname): the run directory and output_dir '
    'must be on a filesystem every node shares" >&2; exit 2; }; shift; trap "" USR1; exec "$@"'
)


@dataclass(frozen=True)
class Settings:
    """A Slurm run's keys of the profile's `[launch]` table, as run.json's "launch" records them at the launch
    (so a resume or a requeue submits the job the launch did, whatever the profile says since)."""

    nodes: int = 1
    nproc_per_node: int | None = None  # ranks per node; default: gpus_per_node, else 1
    gpus_per_node: int | None = None
    partition: str | None = None
    time: str | None = None  # Slurm's time limit: "90", "1:30:00", "2-00:00:00"
    account: str | None = None
    sbatch: tuple[str, ...] = ()  # extra sbatch arguments, one per item

    @classmethod
    def of(cls, launch: Mapping) -> Settings:
        return cls(nodes=launch.get("nodes") or 1, nproc_per_node=launch.get("nproc_per_node"),
                   gpus_per_node=launch.get("gpus_per_node"), partition=launch.get("partition"),
                   time=launch.get("time"), account=launch.get("account"), sbatch=tuple(launch.get("sbatch") or ()))

    @property
    def ranks_per_node(self) -> int:
        return self.nproc_per_node or self.gpus_per_node or 1


def batch_script(run: RunDir, s: Settings, python: str) -> str:
    """The batch script for a run: bash, every profile value quoted. `python` trains; this lftop's runs the steps."""
    q = shlex.quote
    steps = f"{q(sys.executable)} -m lftop.runs.engines.slurm_step"
    torchrun = " ".join(q(a) for a in [
        python, "-u", "-m", "torch.distributed.run", "--nnodes", str(s.nodes),
        "--nproc-per-node", str(s.ranks_per_node), "--rdzv-backend", "c10d"])
    return f"""#!/bin/bash
# Written by lftop for run {run.id} and submitted with sbatch: see run.json and events.jsonl beside it.
# USR1 (before the time limit, or on preemption) comes to this shell only: the run checkpoints at its next
# step end, then `finish` submits the next job, which resumes from that checkpoint.
run_dir={q(str(run.path))}
steps=({steps})
trap 'warned=1; "${{steps[@]}}" warned "$run_dir"' USR1
port=$("${{steps[@]}}" begin "$run_dir") || exit $?
[ -n "$port" ] || exit 0  # superseded: the run has moved on to a later job
"${{steps[@]}}" watch "$run_dir" &  # stall checks while the nodes train
srun --nodes={s.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 ${{SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK}} \\
  /bin/bash -c {q(NODE_WRAPPER)} lftop-node "$run_dir" \\
  {torchrun} --rdzv-endpoint "$(hostname):$port" --rdzv-id "$SLURM_JOB_ID" {q(str(WORKER))} "$run_dir" &
nodes_pid=$!
while :; do  # bash's wait returns early when a trapped signal arrives: wait again until the nodes are done
  warned=0
  wait "$nodes_pid"
  rc=$?
  [ "$warned" = 1 ] || break
done
kill $(jobs -pr) 2>/dev/null  # the watch, if it still runs (never a pid it had once: another may have it now)
exec "${{steps[@]}}" finish "$run_dir" "$rc"
"""


def sbatch_options(run: RunDir, s: Settings) -> list[str]:
    opts = [
        f"--job-name={run.id}", f"--output={run.log}", "--open-mode=append", f"--signal=B:USR1@{warning(s.time)}",
        f"--nodes={s.nodes}", "--ntasks-per-node=1", f"--chdir={run.meta().get('cwd') or run.path}",
    ]
    if s.gpus_per_node:
        opts.append(f"--gres=gpu:{s.gpus_per_node}")
    opts += [f"--{key}={value}" for key, value in (("partition", s.partition), ("time", s.time),
                                                   ("account", s.account)) if value]
    return opts + list(s.sbatch)


def limit_seconds(limit: str) -> int | None:
    """Slurm's time limit in seconds: "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS", rounded up to
    whole minutes as Slurm does; None for "UNLIMITED"/"INFINITE" or anything else."""
    seconds = _seconds(limit)
    return None if seconds is None else -(-seconds // 60) * 60


def _seconds(limit: str) -> int | None:
    days, _, rest = limit.strip().rpartition("-") if "-" in limit else ("", "", limit.strip())
    parts = rest.split(":")
    if not (days.isdigit() or not days) or not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    n = [int(p) for p in parts]
    if days:  # D-HH[:MM[:SS]]
        h, m, sec = (n + [0, 0])[:3]
        return ((int(days) * 24 + h) * 60 + m) * 60 + sec
    if len(n) == 3:
        return (n[0] * 60 + n[1]) * 60 + n[2]
    return n[0] * 60 + (n[1] if len(n) == 2 else 0)


def warning(limit: str | None) -> int:
    """Seconds before the time limit that Slurm sends USR1: WARN_SECS, or a quarter of a shorter limit."""
    seconds = limit_seconds(limit) if limit else None
    return WARN_SECS if seconds is None else max(1, min(WARN_SECS, seconds // 4))


def job_env(meta: Mapping) -> dict[str, str]:
    """The environment sbatch passes on (it exports all): this one's plus run.json's, without what must not leak.

    CUDA_VISIBLE_DEVICES is Slurm's to set on each node; a job's own SLURM_* variables (when the next job is
    submitted from inside one) describe that job, not the next (SLURM_CONF, which finds the cluster, stays)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env.update(meta.get("env") or {})
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


class SlurmEngine:
    name = "slurm"

    def start(self, run: RunDir, requeue_of: str | None = None) -> None:
        """Write the batch script and submit it; record the job id in run.json (and every job's in "jobs").
        `requeue_of`: the job this one continues after Slurm's warning signal. sbatch's refusal (a wrong
        partition, account or option) is recorded as the run's failure, then raised (SlurmError)."""
        meta = run.meta()
        s = Settings.of(meta.get("launch") or {})
        script = run.path / SCRIPT
        write_atomic(script, batch_script(run, s, meta.get("python") or sys.executable))
        script.chmod(0o755)
        try:
            out = slurmcli.client("sbatch", "--parsable", *sbatch_options(run, s), str(script), env=job_env(meta))
        except slurmcli.SlurmError as exc:
            run.event("failed", kind="submit", rc=None, message=str(exc))
            run.set_state(RunState.FAILED)
            raise
        job = out.strip().split(";")[0]
        meta = run.meta()
        meta["job"], meta["jobs"], meta["requeue_of"] = job, [*meta.get("jobs", []), job], requeue_of
        meta["nproc"] = s.nodes * s.ranks_per_node  # every rank on every node
        run.write_meta(meta)
        run.event("submitted", job=job, nodes=s.nodes, nproc_per_node=s.ranks_per_node, script=str(script))

    def request_pause(self, run: RunDir) -> None:
        """The control file on the shared filesystem: every rank sees it at the next step end, then the job ends.
        A job still waiting in the queue is cancelled at once: the run is paused where it was."""
        run.request("pause")
        job = run.meta().get("job")
        current = slurmcli.job(job) if job else None
        if current is not None and current.state == "PENDING":
            slurmcli.client("scancel", "--state=PENDING", job)  # a job that has started meanwhile is left to pause
            if _wait(job, lambda j: j.state != "PENDING", 10).state == "CANCELLED":
                run.event("paused", job=job, before="the job started")
                run.set_state(RunState.PAUSED)

    def stop(self, run: RunDir, grace: float) -> int:
        """scancel the job (SIGTERM, SIGKILL after `grace`), and any job `finish` submitted meanwhile; then wait
        until no process of the run is left on this host. Returns how many jobs and stray processes were ended."""
        run.request("stop")  # `finish` submits no further job after this
        ended, cancelled = 0, set()
        while (job := run.meta().get("job")) and job not in cancelled:
            cancelled.add(job)
            current = slurmcli.job(job)
            if current is None or not current.alive:
                continue
            try:
                slurmcli.client("scancel", job)
            except slurmcli.SlurmError:
                if (current := slurmcli.job(job)) is not None and current.alive:  # not just ended meanwhile
                    raise
            if _wait(job, lambda j: not j.alive, grace).alive:
                slurmcli.client("scancel", "--signal=KILL", "--full", job)
                _wait(job, lambda j: not j.alive, 60)
            ended += 1
        strays = tagged(run.id)  # on a one-host cluster, or a node that is also the login node
        terminate(strays, grace)
        return ended + len(strays)

    def live(self, run: RunDir) -> Live:
        meta = run.meta()
        job_id = meta.get("job")
        if not job_id:
            return Live(alive=False)
        try:
            job = slurmcli.job(job_id)
        except slurmcli.SlurmError as exc:  # the controller is down or restarting: the job itself may well run on
            return Live(alive=True, job=job_id, detail=f"UNKNOWN ({exc})")
        if job is None:
            return Live(alive=False, job=job_id, detail="forgotten by Slurm")
        detail = job.detail + (f", requeued from job {meta['requeue_of']}" if job.alive and meta.get("requeue_of") else "")
        return Live(alive=job.alive, job=job_id, detail=detail, nodes=job.nodes if job.alive else ())

    def gpu_stream(self, run: RunDir, interval: float = 2.0) -> NodeGpus | None:
        """Every node's GPUs, sampled inside the job's allocation (one srun for the job's life; `close()` it);
        None unless the run's job is running."""
        live = self.live(run)
        if not live.alive or not live.nodes or not live.detail or not live.detail.startswith("RUNNING"):
            return None
        return NodeGpus(live.job or "", [n.name for n in live.nodes], interval)


def _wait(job: str, until: Callable[[slurmcli.Job], bool], timeout: float) -> slurmcli.Job:
    """The job once `until(job)` holds (a job Slurm forgot counts as ended), or as it is after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        current = slurmcli.job(job) or slurmcli.Job(job, "COMPLETED")
        if until(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.2)
