"""Runs lftop did not start: a `llamafactory-cli train x.yaml` from a shell (a stand-in executable named
llamafactory-cli, first on PATH, reading LLaMA-Factory's own example config) is listed as external with its step,
`lftop stop` ends it and its orphaned ranks, and `lftop resume` brings it under lftop from its newest checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import STAND_IN, until, wait_for
from lftop.profiles.lfconfig import command_args
from lftop.runs.external import training_argv

EXAMPLE = Path(__file__).parent / "data" / "llamafactory_examples" / "train_lora" / "qwen3_lora_sft.yaml"

# Like llamafactory-cli train: reads output_dir from its YAML (relative to its working directory) and key=value
# overrides, optionally starts ranks in their own sessions as torchrun does, logs a step every 0.2 s to
# trainer_log.jsonl and saves a complete checkpoint every 2 steps, until it is killed.
FAKE_CLI = """
import json, os, subprocess, sys, time
from pathlib import Path
args = sys.argv[2:]
out = next(Path(l.split(":", 1)[1].strip()) for l in Path(args[0]).read_text().splitlines()
           if l.startswith("output_dir:"))
out = next((Path(a.split("=", 1)[1]) for a in args[1:] if a.startswith("output_dir=")), out)
out.mkdir(parents=True, exist_ok=True)
for _ in range(int(os.environ.get("STAND_IN_RANKS", "0"))):
    subprocess.Popen([sys.executable, os.environ["STAND_IN_LAUNCHER"], *args], start_new_session=True)
step = 0
while True:
    step += 1
    with open(out / "trainer_log.jsonl", "a") as f:
        f.write(json.dumps({"current_steps": step, "total_steps": 1000, "loss": 5 - step / 100}) + "\\n")
    if step % 2 == 0:
        (out / f"checkpoint-{step}").mkdir()
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    time.sleep(0.2)
"""


@pytest.fixture
def shell(tmp_path):
    """A shell's world: a venv-like bin/python, llamafactory-cli and a rank script, a working directory holding
    LLaMA-Factory's example config; `start(*overrides, **env)` starts a training from it. Ends what it started."""
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    cli = venv / "llamafactory-cli"
    cli.write_text(f"#!{venv / 'python'}\n{FAKE_CLI}")
    cli.chmod(0o755)
    launcher = tmp_path / "site" / "llamafactory" / "launcher.py"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    started: list[subprocess.Popen] = []

    def start(*overrides: str, **env: str) -> subprocess.Popen:
        environ = {**os.environ, "PATH": f"{venv}:{os.environ['PATH']}", "STAND_IN_LAUNCHER": str(launcher), **env}
        environ.pop("LFTOP_RUN_ID", None)
        proc = subprocess.Popen(["llamafactory-cli", "train", EXAMPLE.name, *overrides], cwd=work, env=environ,
                                start_new_session=True)
        started.append(proc)
        return proc

    start.venv, start.work = venv, work
    yield start
    for proc in started:
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            child.kill()
        proc.kill()
        proc.wait()
    for p in psutil.process_iter(["cmdline"]):
        if str(launcher) in (p.info["cmdline"] or []):
            p.kill()


def _external(lftop, run_id: str | None = None) -> list[dict]:
    rows = [r for r in lftop.json("ls", "--json") if r.get("external") and r["state"] == "running"]
    return [r for r in rows if run_id is None or r["run"] == run_id]


@pytest.mark.parametrize("cmdline, argv", [
    (["/v/bin/python3", "/v/bin/llamafactory-cli", "train", "x.yaml", "lr=1"], ["x.yaml", "lr=1"]),
    (["lmf", "train", "--output_dir", "o"], ["--output_dir", "o"]),
    (["python", "-m", "llamafactory.cli", "train", "x.yaml"], ["x.yaml"]),
    (["/v/bin/python3", "/v/bin/torchrun", "--nnodes", "1", "--nproc_per_node", "2",
      "/v/lib/site-packages/llamafactory/launcher.py", "x.yaml", "a=1"], ["x.yaml", "a=1"]),
    (["python", "-u", "-m", "torch.distributed.run", "/s/llamafactory/launcher.py", "x.json"], ["x.json"]),
    (["python", "-m", "llamafactory.launcher", "x.yaml"], ["x.yaml"]),
    (["llamafactory-cli", "webui"], None),
    (["vim", "x.yaml"], None),
    (["python", "-u", "/lftop/worker.py", "/runs/r1"], None),
])
def test_training_processes_are_known_by_their_command_line(cmdline, argv):
    assert training_argv(cmdline) == argv


def test_the_arguments_are_read_as_llamafactory_reads_them(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "c.yaml")
    config, args = command_args(["c.yaml", "output_dir=elsewhere", "learning_rate=2e-5"], tmp_path)
    assert config == tmp_path / "c.yaml"
    assert args["output_dir"] == "elsewhere" and args["learning_rate"] == 2e-5 and args["lora_rank"] == 8
    assert command_args(["--output_dir", "o", "--bf16", "--lora_rank=4"], tmp_path) == \
        (None, {"output_dir": "o", "bf16": True, "lora_rank": 4})


def test_a_shell_started_run_is_listed_with_its_step_and_stop_ends_it(lftop, shell):
    proc = shell(CUDA_VISIBLE_DEVICES="1")
    run_id = f"ext-{proc.pid}"
    row = wait_for(lambda: next((r for r in _external(lftop, run_id) if (r["step"] or 0) >= 2), None), 30,
                   "the external run to be listed with a step")
    assert row["output_dir"] == str(shell.work / "saves" / "qwen3-4b" / "lora" / "sft")
    assert row["config"] == str(shell.work / EXAMPLE.name)
    assert row["cuda_visible_devices"] == "1" and row["nproc"] == 1 and row["loss"] < 5
    assert row["python"] == str(shell.venv / "python")  # the venv's interpreter, as started
    assert f"{run_id} " in lftop("ls").stdout and "external:" in lftop("ls").stdout
    assert lftop.json("show", run_id, "--json")["pid"] == proc.pid
    stopped = lftop("stop", run_id, "--grace", "2")
    assert f"{run_id}: stopped (1 processes)" in stopped.stdout
    assert proc.wait(timeout=10) is not None
    record = lftop.json("show", run_id, "--json")
    assert record["state"] == "stopped" and record["external"] is True and record["alive"] is False


def test_stop_ends_orphaned_ranks_and_nothing_else(lftop, shell):
    proc = shell(STAND_IN_RANKS="2")
    other = shell("output_dir=saves/other")  # the same user's other run, in the same directory
    wait_for(lambda: any(r["nproc"] == 2 for r in _external(lftop, f"ext-{proc.pid}")), 30, "two ranks")
    ranks = [c for c in psutil.Process(proc.pid).children() if c.cmdline()[1].endswith("launcher.py")]
    proc.kill()  # kill -9 of the launcher: the ranks, in their own sessions, live on as orphans
    proc.wait()
    orphans = wait_for(lambda: [r for r in _external(lftop) if set(r["pids"]) == {p.pid for p in ranks}], 30,
                       "the orphaned ranks listed as one run")
    assert orphans[0]["run"] == f"ext-{min(ranks, key=lambda p: p.create_time()).pid}"
    lftop("stop", orphans[0]["run"], "--grace", "2")
    assert psutil.wait_procs(ranks, timeout=10)[1] == []
    assert other.poll() is None  # another run is never touched
    assert [r["run"] for r in _external(lftop)] == [f"ext-{other.pid}"]


def test_stop_never_signals_a_pid_that_another_process_has_taken_since(home, shell):
    """A run found with its process as pid P started at T: if P is now another process (P exited and the kernel
    handed the number on), stop leaves that process alone and still ends the run's live processes."""
    from lftop.ops import external
    from lftop.runs.process import ProcessRef

    proc = shell()
    run = wait_for(lambda: next((r for r in external.runs() if r.id == f"ext-{proc.pid}"), None), 30, "the run")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        taken = ProcessRef(bystander.pid, psutil.Process(bystander.pid).create_time() - 50)  # P, as it was then
        recycled = dataclasses.replace(run, members=(taken,))
        record, count = external.stop(recycled, home, grace=2)
        assert proc.wait(timeout=10) is not None and count == 1  # found again by its output_dir, and ended
        assert bystander.poll() is None  # the pid's new owner was not signalled
        assert record.meta()["external"] is True
    finally:
        bystander.kill()
        bystander.wait()


def test_resume_brings_a_stopped_external_run_under_lftop(lftop, shell):
    proc = shell()
    run_id = f"ext-{proc.pid}"
    out = shell.work / "saves" / "qwen3-4b" / "lora" / "sft"
    wait_for(lambda: (out / "checkpoint-4" / "trainer_state.json").exists(), 30, "checkpoint-4")
    lftop("stop", run_id, "--grace", "2")
    newest = max((p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                 key=lambda p: int(p.name.split("-")[1]))
    (out / "checkpoint-99999").mkdir()  # an incomplete one is never resumed from
    (shell.venv / "python").unlink()  # the venv's interpreter, now a stand-in trainer for the resumed run
    (shell.venv / "python").write_text(STAND_IN)
    (shell.venv / "python").chmod(0o755)
    resumed = lftop.json("resume", run_id, "--json")
    assert resumed["external"] == run_id and resumed["step"] == int(newest.name.split("-")[1])
    meta = json.loads((Path(resumed["run_dir"]) / "run.json").read_text())
    assert meta["args"]["resume_from_checkpoint"] == str(newest)
    assert "overwrite_output_dir" not in meta["args"] and meta["args"]["lora_rank"] == 8
    assert meta["cwd"] == str(shell.work) and meta["output_dir"] == str(out)
    assert meta["python"] == str(shell.venv / "python") and not resumed["run"].startswith("ext-")
    started = lftop.wait(resumed["run"], lambda s: s["alive"] and 5 in s["checkpoints"], timeout=60)
    assert resumed["step"] in started["checkpoints"]  # where it started from is its own to resume from
    again = lftop("resume", run_id, check=False)
    assert again.returncode == 1 and f"was resumed already as {resumed['run']}" in again.stderr
    lftop("stop", resumed["run"], "--grace", "1")


async def test_the_app_lists_an_external_run_and_stops_it(shell, home):
    from lftop.tui.app import LftopApp
    from lftop.tui.screens import ConfirmScreen

    proc = shell()
    app = LftopApp(home, interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        ext = lambda: next((r for r in app.runs  # noqa: E731 -- the one this test started, not another of this user's
                            if r.external and r.alive and r.process and r.process.pid == proc.pid), None)
        await until(pilot, lambda: ext() is not None and (ext().step or 0) > 0, 60, "the external run with its step")
        app.runs_table.move_cursor(row=[str(k.value) for k in app.runs_table.rows].index(ext().id))
        await pilot.press("p")
        await until(pilot, lambda: any("not started by lftop" in n.message for n in app._notifications), 60, "the refusal")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 60, "the question")
        await pilot.press("y")
        await until(pilot, lambda: proc.poll() is not None, 60, "the external run to end")
        await until(pilot, lambda: any(r.external and r.state == "stopped" for r in app.runs), 60, "its stopped record")
        await pilot.press("q")
