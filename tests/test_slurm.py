"""The Slurm engine on a real two-node Slurm 22.05 cluster brought up on this host (tests/slurm_cluster.py).

Runs go through `lftop launch/pause/resume/stop/show` as a user's would; what the command line cannot do
(a stand-in interpreter, a job held back, Slurm's own requeue) drives the engine directly on a run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slurm_cluster
from conftest import jsonl_steps, needs_llamafactory, until, wait_for, write_profile
from lftop.profiles import load
from lftop.runs.engines import Node, get, slurmcli
from lftop.runs.engines.slurm import limit_seconds, warning
from lftop.runs.process import tagged
from lftop.runs.rundir import RunDir
from lftop.runs.state import RunState
from lftop.runs.status import status

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Two slurmd "nodes" (2 CPUs and 2 fake GPUs each), slurmctld and munged, up once for the session."""
    if missing := slurm_cluster.missing_binaries():
        pytest.skip("Slurm is not installed (missing " + ", ".join(missing) + "): .ci/run installs it")
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH", "OMP_NUM_THREADS")}
    try:
        with slurm_cluster.running(tmp_path_factory.mktemp("slurm")) as env:
            os.environ.update(env)
            os.environ["OMP_NUM_THREADS"] = "1"  # two "nodes" of ranks share this host's cores
            # Jobs start in the cluster's directory: lftop must import from there as it does here.
            path = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            os.environ["PYTHONPATH"] = os.pathsep.join(path)
            yield env
    except slurm_cluster.ClusterUnavailable as exc:
        pytest.skip(f"the test Slurm cluster did not come up: {exc}")
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def new_run(root: Path, args: dict, output_dir: Path, python: str = sys.executable, **slurm) -> RunDir:
    """A run directory as `lftop launch` writes one, for the Slurm engine."""
    run = RunDir(root / "runs" / f"r{time.monotonic_ns()}")
    run.path.mkdir(parents=True)
    run.write_meta({
        "id": run.id, "engine": "slurm", "args": args, "cwd": str(root), "output_dir": str(output_dir),
        "python": python, "command": [python], "created": time.time(), "launch": {"engine": "slurm", **slurm},
        "env": {"PYTHONUNBUFFERED": "1", "LFTOP_RUN_ID": run.id, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
    })
    run.set_state(RunState.STARTING)
    return run


def squeue_ids() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()


def events(run: RunDir) -> list[str]:
    return [e["event"] for e in run.events()]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["gpu", "n", "node-", "a1b"]),
                          st.lists(st.tuples(st.integers(0, 120), st.integers(0, 3), st.booleans()), min_size=1, max_size=3)),
                min_size=1, max_size=3), st.sampled_from(["", "login1,"]))
def test_host_lists_expand_as_slurm_expands_them(cluster, groups, plain):
    parts = [plain.rstrip(",")] if plain else []
    for prefix, ranges in groups:
        spec = ",".join(f"{lo:03d}-{lo + span:03d}" if pad else f"{lo}-{lo + span}" for lo, span, pad in ranges)
        parts.append(f"{prefix}[{spec}]")
    expr = ",".join(parts)
    slurm = subprocess.run(["scontrol", "show", "hostnames", expr], capture_output=True, text=True, check=True)
    assert slurmcli.expand_hostlist(expr) == slurm.stdout.split()


def fake_python(directory: Path, rc: int) -> Path:
    """An interpreter that records, on each node, the node, its GPUs and its arguments; nodeA then exits `rc`
    a second later (after nodeB, which exits 0: srun would otherwise end nodeB for nodeA's failure)."""
    fake = directory / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$SLURMD_NODENAME" "$CUDA_VISIBLE_DEVICES" "$@" '
                    '> "$(dirname "$0")/argv-$SLURMD_NODENAME"\n'
                    f'[ "$SLURMD_NODENAME" = nodeA ] || exit 0\nsleep 1\nexit {rc}\n')
    fake.chmod(0o755)
    return fake


def ended(job: str, timeout: float = 60) -> slurmcli.Job:
    return wait_for(lambda: (j := slurmcli.job(job)) and not j.alive and j, timeout, f"job {job} to end")


def test_each_node_runs_torchrun_with_the_exact_arguments_and_nothing_is_shell_evaluated(cluster, tmp_path):
    """Paths with spaces, quotes and `$(...)` stay literal; the profile's sbatch options reach Slurm."""
    odd = tmp_path / "with space $(touch PWNED) 'q'"
    odd.mkdir()
    run = new_run(odd, {}, odd / "out", python=str(fake_python(odd, 3)), nodes=2, gpus_per_node=1, partition="debug",
                  time="5", account="lab", sbatch=["--comment=a b;c"])
    get("slurm").start(run)
    job = run.meta()["job"]
    end = ended(job)
    assert end.state == "FAILED" and end.exit_code == 3 and end.detail == "FAILED, exit 3"
    assert not list(tmp_path.rglob("PWNED"))
    for node in ("nodeA", "nodeB"):
        name, gpus, *argv = (odd / f"argv-{node}").read_text().splitlines()
        assert name == node and gpus == "0"
        assert argv[:10] == ["-u", "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                             "--rdzv-backend", "c10d", "--rdzv-endpoint"]
        assert argv[10].rpartition(":")[2].isdigit() and argv[11:13] == ["--rdzv-id", job]
        assert argv[13:] == [str(ROOT / "src/lftop/worker.py"), str(run.path)]
    assert run.recorded_state() == "failed" and run.events()[-2]["event"] == "failed" and run.events()[-1]["rc"] == 3
    fields = slurmcli.client("scontrol", "show", "job", "-o", job)
    for field in ("Comment=a b;c", f"JobName={run.id}", "Partition=debug", "TimeLimit=00:05:00", "Account=lab"):
        assert field in fields
    # Once the controller forgets the job, accounting (here the job completion log) tells the same story.
    row = next(r for r in slurmcli.client("sacct", "-c", "-P", "-n", "-o", "jobid,state,exitcode,nodelist", "-j", job)
               .splitlines() if r.startswith(f"{job}|"))
    assert slurmcli.parse_sacct(row) == slurmcli.Job(job, "FAILED", exit_code=3, signal=0,
                                                   nodes=tuple(Node(n.name) for n in end.nodes))


def requeue_now(job: str) -> None:
    """What Slurm does to a job it preempts with PreemptMode=REQUEUE: end it, and start it again."""
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: slurmcli.job(job).state == "PENDING", 60, f"job {job} to be pending")
    # slurmd refuses the job's new credential in the second its old one was revoked (at the job's end): the
    # requeue's own 121 s delay avoids that; a restart at once must wait for the next second.
    time.sleep(1.5)
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)


def test_a_job_that_slurm_requeues_after_the_run_moved_on_ends_at_once(cluster, tmp_path):
    run = new_run(tmp_path, {}, tmp_path / "out", python=str(fake_python(tmp_path, 0)), nodes=2)
    get("slurm").start(run)
    job = run.meta()["job"]
    ended(job)
    (tmp_path / "argv-nodeA").unlink()
    meta = run.meta()
    meta["jobs"].append("later")  # as after `finish` submitted the next job
    run.write_meta(meta)
    requeue_now(job)
    wait_for(lambda: "superseded" in events(run), 60, "the requeued job to start")
    assert ended(job).state == "COMPLETED" and not (tmp_path / "argv-nodeA").exists()


def test_a_pending_job_says_why_stops_and_pauses_at_once(cluster, tmp_path):
    engine = get("slurm")
    held, waiting = (new_run(tmp_path, {}, tmp_path / "out", nodes=2, sbatch=["--begin=now+3600"]) for _ in range(2))
    for run in (held, waiting):
        engine.start(run)
        live = engine.live(run)
        assert live.alive and live.job == run.meta()["job"] and live.detail == "PENDING (BeginTime)" and live.nodes == ()
    assert engine.stop(held, grace=5) == 1
    live = engine.live(held)
    assert not live.alive and live.detail == "CANCELLED" and live.job not in squeue_ids()
    engine.request_pause(waiting)  # no step end will come while it waits: the job leaves the queue now
    assert waiting.recorded_state() == "paused" and not engine.live(waiting).alive
    assert waiting.meta()["job"] not in squeue_ids()


def test_a_job_sbatch_refuses_fails_the_run_with_slurms_reason(cluster, tmp_path):
    run = new_run(tmp_path, {}, tmp_path / "out", nodes=2, partition="nosuch")
    with pytest.raises(slurmcli.SlurmError, match="sbatch: .*[Pp]artition"):
        get("slurm").start(run)
    failed = run.events()[-1]
    assert run.recorded_state() == "failed" and failed["kind"] == "submit" and "partition" in failed["message"]
    assert "job" not in run.meta()


# Every node's task: nodeA logs three steps to trainer_log.jsonl as LLaMA-Factory's LogCallback does, then both
# nodes hang without a word (a stuck collective).
STALLER = """#!/bin/sh
for run_dir; do :; done
if [ "$SLURMD_NODENAME" = nodeA ]; then
  out=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['output_dir'])" "$run_dir/run.json")
  mkdir -p "$out"
  for i in 1 2 3; do
    echo "{\\"current_steps\\": $i, \\"total_steps\\": 100, \\"loss\\": 1.5}" >> "$out/trainer_log.jsonl"
    sleep 0.2
  done
fi
exec sleep 600
"""


def test_a_slurm_run_whose_steps_stop_is_flagged_stalled_and_the_notify_command_hears(cluster, tmp_path):
    heard, hook, stand_in = tmp_path / "heard.jsonl", tmp_path / "notify", tmp_path / "python"
    hook.write_text(f"#!/bin/sh\ncat >> {heard}\n")
    stand_in.write_text(STALLER)
    for script in (hook, stand_in):
        script.chmod(0o755)
    (tmp_path / "config.toml").write_text(f'[notify]\ncommand = ["{hook}"]\n')
    (tmp_path / "config.toml").chmod(0o600)
    run = new_run(tmp_path, {}, tmp_path / "out", python=str(stand_in), nodes=2, stall_after=2)
    engine = get("slurm")
    engine.start(run)
    stalled = wait_for(lambda: [e for e in run.events() if e["event"] == "stalled"], 90, "the stall flag")
    assert stalled[0]["step"] == 3 and stalled[0]["threshold"] == 2
    said = wait_for(lambda: heard.exists() and [json.loads(line) for line in heard.read_text().splitlines()], 30,
                    "the notify command")
    assert said[0]["event"] == "stalled" and said[0]["run"] == run.id and said[0]["step"] == 3
    assert engine.live(run).alive and status(run).stalled  # flagged, not ended: stopping it is the user's call
    run.event("job started", job="next")  # as the run's next job (a requeue) records its start: a fresh watch
    assert not status(run).stalled
    engine.stop(run, grace=5)
    assert tagged(run.id) == [] and not engine.live(run).alive  # the watch ended with the job


def test_a_slurm_runs_end_is_notified_before_its_job_ends(cluster, tmp_path):
    """The job's end ends every process it started (proctrack/cgroup on real clusters): the notify command runs
    to its end inside the job's last step, not detached after it."""
    heard, hook = tmp_path / "heard.jsonl", tmp_path / "notify"
    hook.write_text(f"#!/bin/sh\nsleep 2\ncat >> {heard}\n")
    hook.chmod(0o755)
    (tmp_path / "config.toml").write_text(f'[notify]\ncommand = ["{hook}"]\n')
    (tmp_path / "config.toml").chmod(0o600)
    run = new_run(tmp_path, {}, tmp_path / "out", python=str(fake_python(tmp_path, 0)), nodes=2)
    get("slurm").start(run)
    ended(run.meta()["job"])
    assert run.recorded_state() == "completed"
    said = [json.loads(line) for line in heard.read_text().splitlines()] if heard.exists() else []
    assert [(s["event"], s["run"]) for s in said] == [("completed", run.id)]


@pytest.mark.parametrize("limit", ["45", "90:30", "1:02:03", "2-3", "2-03:04", "1-00:00:05"])
def test_time_limits_read_as_slurm_reads_them(cluster, limit):
    job = slurmcli.client("sbatch", "--parsable", "--hold", f"--time={limit}", "--wrap", "true").strip()
    try:
        shown = dict(f.split("=", 1) for f in slurmcli.client("scontrol", "show", "job", "-o", job).split()
                     if "=" in f)["TimeLimit"]
    finally:
        slurmcli.client("scancel", job)
    assert limit_seconds(limit) == limit_seconds(shown)
    assert warning(limit) == min(300, limit_seconds(limit) // 4)


@pytest.mark.train
@needs_llamafactory
def test_a_job_slurm_requeues_itself_resumes_from_the_newest_complete_checkpoint(cluster, tiny, tmp_path):
    out = tmp_path / "out"
    args = load(write_profile(tmp_path / "p.toml", tiny, out, max_steps=400, save_steps=50)).args()
    run = new_run(tmp_path, args, out, nodes=2, nproc_per_node=1)
    engine = get("slurm")
    engine.start(run)
    job = run.meta()["job"]
    wait_for(lambda: any(e["event"] == "checkpoint" and e["step"] == 50 for e in run.events()), 180, "checkpoint-50")
    requeue_now(job)
    assert engine.live(run).detail.endswith(", requeued by Slurm (1x)")
    wait_for(lambda: "requeued" in events(run), 120, "the job to start again")
    wait_for(lambda: not engine.live(run).alive and run.recorded_state() == "completed", 240, "the end")
    assert run.meta()["jobs"] == [job]
    requeued = next(e for e in run.events() if e["event"] == "requeued")
    assert requeued["by"] == "slurm" and requeued["restarts"] == 1 and requeued["step"] >= 50
    steps = jsonl_steps(tmp_path / "out")
    assert sorted(set(steps)) == list(range(1, 401))
    assert all(s > requeued["step"] for s in steps if steps.count(s) > 1)  # only steps after the checkpoint again


def slurm_profile(tmp_path: Path, tiny, max_steps: int, **train) -> Path:
    """The demo profile on the tiny model, on two nodes with one rank and one GPU each."""
    path = write_profile(tmp_path / "p.toml", tiny, tmp_path / "out", max_steps=max_steps, **train)
    slurm = 'engine = "slurm"\nnodes = 2\nnproc_per_node = 1\ngpus_per_node = 1\ntime = "30"\n'
    path.write_text(path.read_text().replace("[launch]\n", "[launch]\n" + slurm))
    return path


def launched(lftop, profile: Path) -> tuple[str, RunDir]:
    run = lftop.json("launch", str(profile), "--json")
    return run["run"], RunDir(Path(run["run_dir"]))


def training(lftop, run: str, past: int) -> dict:
    return lftop.wait(run, lambda s: s["state"] == "running" and (s["step"] or 0) > past)


@pytest.mark.train
@needs_llamafactory
def test_two_nodes_train_pause_into_a_checkpoint_and_resume_to_the_end(cluster, lftop, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LFTOP_SIMULATE", "2")  # the GPU sampler on each node reports two simulated GPUs
    run, rundir = launched(lftop, slurm_profile(tmp_path, tiny, max_steps=400, save_steps=1000))
    show = training(lftop, run, 5)
    first = show["job"]
    assert show["engine"] == "slurm" and first and show["detail"] == "RUNNING" and show["nproc"] == 2
    assert show["nodes"] == [{"name": "nodeA", "gpus": [0]}, {"name": "nodeB", "gpus": [0]}]
    stream = get("slurm").gpu_stream(rundir, interval=0.5)
    try:
        samples = wait_for(lambda: len(s := stream.latest()) == 2 and s, 60, "both nodes' GPUs")
        assert {node: [d["index"] for d in s["gpus"]["devices"]] for node, s in samples.items()} == {
            "nodeA": [0, 1], "nodeB": [0, 1]}
    finally:
        stream.close()
    assert not stream.running
    lftop("pause", run)
    paused = lftop.wait(run, lambda s: not s["alive"])
    assert paused["state"] == "paused" and paused["detail"] == "COMPLETED" and first not in squeue_ids()
    k = lftop.json("resume", run, "--json")["step"]
    assert 0 < k < 400
    done = lftop.wait(run, lambda s: not s["alive"] and s["state"] != "starting", timeout=240)
    assert done["state"] == "completed" and done["job"] != first and done["step"] == 400
    assert jsonl_steps(tmp_path / "out") == list(range(1, 401))  # continued at the next step: each step once
    assert next(e for e in reversed(rundir.events()) if e["event"] == "running")["step"] == k


@pytest.mark.train
@needs_llamafactory
def test_the_warning_signal_checkpoints_requeues_and_resumes_with_each_step_once(cluster, lftop, tiny, tmp_path):
    run, rundir = launched(lftop, slurm_profile(tmp_path, tiny, max_steps=400, save_steps=1000))
    first = training(lftop, run, 5)["job"]
    subprocess.run(["scancel", "--signal=USR1", "--batch", first], check=True)
    second = lftop.wait(run, lambda s: s["job"] != first and s["alive"])
    assert second["detail"].endswith(f", requeued from job {first}")
    assert slurmcli.job(first).state == "COMPLETED"  # the first job ended by itself, after its checkpoint
    done = lftop.wait(run, lambda s: not s["alive"] and s["state"] not in ("starting", "running"), timeout=240)
    assert done["state"] == "completed" and rundir.meta()["jobs"] == [first, done["job"]]
    said = events(rundir)
    assert said.index("requeue requested") < said.index("paused") < said.index("requeued") < said.index("completed")
    requeued = next(e for e in rundir.events() if e["event"] == "requeued")
    assert requeued["job"] == first and requeued["checkpoint"].endswith(f"checkpoint-{requeued['step']}")
    assert jsonl_steps(tmp_path / "out") == list(range(1, 401))


@pytest.mark.train
@needs_llamafactory
def test_stop_cancels_the_job_and_leaves_no_process(cluster, lftop, tiny, tmp_path):
    run, rundir = launched(lftop, slurm_profile(tmp_path, tiny, max_steps=5000, save_steps=10000))
    job = training(lftop, run, 2)["job"]
    agents = [p for p in tagged(run) if p.cmdline()[1:4] == ["-u", "-m", "torch.distributed.run"]]
    assert len(agents) == 2  # one torchrun agent per node, each with its worker
    # USR1 to every task (not the batch shell): the torchrun agents ignore it, training goes on.
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    at = lftop.json("show", run, "--json")["step"]
    lftop.wait(run, lambda s: s["step"] > at + 20)
    assert all(a.is_running() for a in agents) and rundir.control() == "" and rundir.recorded_state() == "running"
    lftop("stop", run, "--grace", "5")
    show = lftop.json("show", run, "--json")
    assert show["state"] == "stopped" and not show["alive"] and show["detail"] == "CANCELLED"
    assert tagged(run) == [] and job not in squeue_ids() and rundir.meta()["jobs"] == [job]


@pytest.mark.train
@needs_llamafactory
async def test_the_app_shows_a_slurm_runs_state_and_every_nodes_gpus(cluster, lftop, tiny, tmp_path, monkeypatch):
    import asyncio

    from lftop.tui import render
    from lftop.tui.app import LftopApp
    from lftop.tui.widgets import GpuPanel, RunsTable

    monkeypatch.setenv("LFTOP_SIMULATE", "2")  # each node's sampler (and this host's) reports two simulated GPUs
    run, _ = launched(lftop, slurm_profile(tmp_path, tiny, max_steps=5000, save_steps=10000))
    await asyncio.to_thread(training, lftop, run, 2)
    app = LftopApp(lftop.home, interval=0.5, select=run)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.runs and app.runs[0].state == "running" and app.runs[0].job, 60, "the running job")
        row = app.query_one(RunsTable).get_row(run)
        assert "nodeA,nodeB" in [str(cell) for cell in row]
        panel = app.query_one(GpuPanel)
        await until(pilot, lambda: panel.sample is not None and set(panel.sample.nodes) == {"nodeA", "nodeB"}, 60, "both nodes")
        text = render.gpu_panel(panel.sample, panel.rings, 160, True).plain
        assert all(f"{node}/{i} " in text for node in ("nodeA", "nodeB") for i in (0, 1)), text
        await pilot.press("q")
    await asyncio.to_thread(lftop, "stop", run)
