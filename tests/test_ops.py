"""lftop.ops: a launch is planned once, and the run gets exactly the GPUs its estimate was made for."""

from __future__ import annotations

import os
import stat

import pytest

from lftop import ops
from lftop.gpu.nvml import Nvml
from lftop.gpu.simulated import SimulatedNvml
from lftop.profiles import load
from lftop.runs.rundir import RunDir


def _profile(tmp_path, gpus: str, python: str = "/bin/true") -> object:
    """A profile whose "interpreter" is a stand-in: the run ends at once, completed (/bin/true) or failed."""
    path = tmp_path / "p.toml"
    path.write_text(f'[launch]\ngpus = {gpus}\npython = "{python}"\n[train]\n'
                    'model_name_or_path = "Qwen/Qwen2.5-0.5B-Instruct"\nstage = "sft"\nfinetuning_type = "lora"\n'
                    f'output_dir = "{tmp_path / "out"}"\nlogging_steps = 1\n')
    return load(path)


def test_the_estimate_and_the_launch_use_one_placement(tmp_path, home):
    """Four simulated GPUs, 0 and 2 busy with another process: a profile asking for two GPUs is estimated on
    the two with the most free memory, and the run's CUDA_VISIBLE_DEVICES names exactly those."""
    sim = SimulatedNvml(count=4, memory_gib=80)
    sim.external = {0: [os.getpid()], 2: [os.getpid()]}
    snapshot = Nvml(sim).read()
    free = {d.index: d.mem_free for d in snapshot.devices}
    assert free[1] > free[0] and free[3] > free[2]

    plan = ops.plan(_profile(tmp_path, "2"), snapshot=snapshot)
    assert plan.placement == ops.Placement("1,3", 2)
    assert plan.report is not None and plan.note.startswith("GPU(s) 1, 3:")

    run = ops.launch(plan, home)
    meta = run.meta()
    assert meta["env"]["CUDA_VISIBLE_DEVICES"] == "1,3" and meta["gpus"] == "1,3" and meta["nproc"] == 2
    assert ops.wait_settled(run, 60).alive is False


def test_explicit_gpus_are_taken_as_written(tmp_path):
    snapshot = Nvml(SimulatedNvml(count=4)).read()
    assert ops.plan(_profile(tmp_path, '"0"'), snapshot=snapshot).placement == ops.Placement("0", 1)
    assert ops.plan(_profile(tmp_path, '"2,3"'), snapshot=snapshot).placement == ops.Placement("2,3", 2)
    assert ops.plan(_profile(tmp_path, '"0"'), gpus="3", snapshot=snapshot).placement == ops.Placement("3", 1)


def test_run_files_are_private_whatever_the_umask(tmp_path, home):
    old = os.umask(0o022)
    try:
        run = ops.launch(ops.plan(_profile(tmp_path, '""')), home)
        ops.wait_settled(run, 60)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(home / "runs").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(run.path).st_mode) == 0o700
    for name in ("run.json", "state", "events.jsonl", "training.log", "args.yaml"):
        assert stat.S_IMODE(os.stat(run.path / name).st_mode) == 0o600, name


def test_a_refusal_changes_nothing(tmp_path, home):
    """Resume of a failed run with no checkpoint is refused before any state or event is written."""
    run = ops.launch(ops.plan(_profile(tmp_path, '""', "/bin/false")), home)
    ops.wait_settled(run, 60)
    before = (RunDir(run.path).recorded_state(), len(run.events()))
    with pytest.raises(ops.Refused, match="no complete checkpoint"):
        ops.resume(run, home)
    assert (run.recorded_state(), len(run.events())) == before
