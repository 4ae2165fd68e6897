"""A run resumes only from its own work; one output_dir, one live run; failures are early and named."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import jsonl_steps, needs_llamafactory, stand_in_profile, wait_for, write_profile
from lftop.runs.rundir import RunDir, all_runs


def own_checkpoint_written(lftop, run: str):
    return lambda: (s := lftop.json("show", run, "--json"))["alive"] and s["checkpoints"] == [5]


@pytest.mark.train
@needs_llamafactory
def test_a_fresh_start_into_a_used_output_dir_never_mixes_with_the_earlier_run(lftop, tiny, tmp_path):
    """A trains to 20 and continues to 30; B starts fresh in the same output_dir (--force), pauses before A's
    last step and resumes: B continues at its own next step and reaches its end; A keeps its own record."""
    out = tmp_path / "out"
    profile_a = write_profile(tmp_path / "a.toml", tiny, out, max_steps=20, save_steps=10)
    a = lftop.json("launch", str(profile_a), "--json")["run"]
    done = lftop.wait(a, lambda s: s["state"] == "completed")
    assert done["step"] == 20 and done["checkpoints"] == [10, 20]
    more = lftop.json("resume", a, "--max-steps", "30", "--json")
    assert more["step"] == 20
    done = lftop.wait(a, lambda s: s["state"] == "completed")
    assert done["step"] == 30 and jsonl_steps(out)[20] == 21  # the first new step is 21
    assert jsonl_steps(out) == list(range(1, 31))

    profile_b = write_profile(tmp_path / "b.toml", tiny, out, max_steps=200, save_steps=50)
    hook = tmp_path / "slow"  # B's steps take 200 ms more: it pauses before A's last step (30) even on a loaded machine
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import time, transformers\n_step = transformers.Trainer.training_step\n"
        "def training_step(self, *a, **k):\n    time.sleep(0.2)\n    return _step(self, *a, **k)\n"
        "transformers.Trainer.training_step = training_step\n")
    profile_b.write_text(profile_b.read_text().replace("[launch]", f'[launch]\nenv = {{ PYTHONPATH = "{hook}" }}'))
    refused = lftop("launch", str(profile_b), check=False)
    assert refused.returncode == 1 and f"lftop resume {a}" in refused.stderr and "--force" in refused.stderr
    b = lftop.json("launch", str(profile_b), "--force", "--json")["run"]
    lftop.wait(b, lambda s: s["state"] == "running" and (s["step"] or 0) >= 2)
    paused = lftop("pause", b, "--wait").stdout
    shown = lftop.json("show", b, "--json")
    k = shown["checkpoints"][-1]
    assert shown["state"] == "paused" and k < 30 and f"checkpoint-{k}" in paused  # B's own checkpoint, not A's

    a_now = lftop.json("show", a, "--json")
    aside = Path(a_now["output_dir"])
    assert aside.parent == out and aside.name.startswith("set-aside-")  # A's files moved aside, none deleted
    assert a_now["state"] == "completed" and a_now["step"] == 30 and a_now["checkpoints"] == [10, 20, 30]
    assert jsonl_steps(aside) == list(range(1, 31))  # A's own loss curve

    assert lftop.json("resume", b, "--json")["step"] == k
    done = lftop.wait(b, lambda s: s["state"] == "completed", timeout=300)
    assert done["step"] == 200 and jsonl_steps(out) == list(range(1, 201))  # each of B's steps once
    assert lftop.json("show", a, "--json")["step"] == 30


def test_a_fresh_start_from_a_named_checkpoint_keeps_that_checkpoint_in_place(lftop, tmp_path):
    """--force past the estimate with resume_from_checkpoint set: nothing is set aside (it would move the very
    checkpoint the run starts from)."""
    out = tmp_path / "out"
    run = lftop.json("launch", str(stand_in_profile(tmp_path, str(out))), "--json")["run"]
    wait_for(own_checkpoint_written(lftop, run), 60, "the stand-in's checkpoint")
    lftop("stop", run)
    profile = stand_in_profile(tmp_path, str(out), "again")
    profile.write_text(profile.read_text() + f'resume_from_checkpoint = "{out / "checkpoint-5"}"\n')
    second = lftop.json("launch", str(profile), "--force", "--json")["run"]
    assert (out / "checkpoint-5" / "trainer_state.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith("set-aside-")]
    lftop("stop", second)


def test_aliases_of_a_busy_output_dir_are_refused(lftop, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out2")
    run = lftop.json("launch", str(stand_in_profile(tmp_path, str(tmp_path / "out2"))), "--json")["run"]
    wait_for(own_checkpoint_written(lftop, run), 60, "the stand-in's checkpoint")
    for alias in (f"{tmp_path}/sub/../out2", f"{tmp_path}/link", "out2"):
        second = lftop("launch", str(stand_in_profile(tmp_path, alias, "alias")), "--force", check=False)
        assert second.returncode == 1 and f"in use by live run {run}" in second.stderr, alias
    lftop("stop", run)


def test_a_launch_racing_a_resume_never_starts_two_trainers_in_one_output_dir(lftop, tmp_path):
    out = tmp_path / "out"
    profile = stand_in_profile(tmp_path, str(out))
    run = lftop.json("launch", str(profile), "--json")["run"]
    wait_for(own_checkpoint_written(lftop, run), 60, "the stand-in's checkpoint")
    for _ in range(3):
        lftop("stop", run)
        racers = [threading.Thread(target=lftop, args=command, kwargs={"check": False})
                  for command in (("resume", run), ("launch", str(profile), "--force"), ("resume", run))]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        live = [s for s in lftop.json("ls", "--json") if s["alive"]]
        dirs = [str(Path(s["output_dir"]).resolve()) for s in live]
        assert len(dirs) == len(set(dirs)), live  # no output_dir has two live runs
        assert sum(1 for s in live if s["run"] == run) <= 1
        for s in live:
            if s["run"] != run:
                lftop("stop", s["run"])
        if not any(s["run"] == run for s in live):
            lftop("resume", run, check=False)
            wait_for(lambda: lftop.json("show", run, "--json")["alive"], 30, "the resumed stand-in")


def test_resume_on_another_number_of_ranks_keeps_the_effective_batch_or_says_why_not(lftop, tmp_path):
    run = lftop.json("launch", str(stand_in_profile(tmp_path, str(tmp_path / "out"))), "--json")["run"]
    wait_for(own_checkpoint_written(lftop, run), 60, "the stand-in's checkpoint")
    lftop("stop", run)
    refused = lftop("resume", run, "--gpus", "2", check=False)  # 1 rank x 3 accumulation steps: 3 is odd
    assert refused.returncode == 1 and "does not divide by 2" in refused.stderr
    resumed = lftop.json("resume", run, "--gpus", "3", "--json")
    assert resumed["nproc"] == 3 and resumed["gradient_accumulation_steps"] == 1  # 1 x 3 = 3 x 1
    meta = json.loads((lftop.home / "runs" / run / "run.json").read_text())
    assert "--nproc_per_node" in meta["command"] and meta["command"][meta["command"].index("--nproc_per_node") + 1] == "3"
    lftop("stop", run)


def test_a_missing_interpreter_is_refused_before_anything_starts(lftop, tmp_path):
    profile = stand_in_profile(tmp_path, str(tmp_path / "out"))
    profile.write_text(profile.read_text().replace(str(tmp_path / "trainer"), "pyhton3"))
    result = lftop("launch", str(profile), check=False)
    assert result.returncode == 1 and "pyhton3: not found on PATH" in result.stderr and "p.toml:3" in result.stderr
    assert "Traceback" not in result.stderr and all_runs(lftop.home) == []


def test_a_supervisor_that_cannot_start_its_command_records_failed_with_the_reason(lftop, tmp_path):
    run = lftop.json("launch", str(stand_in_profile(tmp_path, str(tmp_path / "out"))), "--json")["run"]
    lftop("stop", run)
    run_dir = RunDir(lftop.home / "runs" / run)
    meta = run_dir.meta()
    meta["command"] = [str(tmp_path / "gone" / "python"), "-u", "worker.py", str(run_dir.path)]
    run_dir.write_meta(meta)
    subprocess.run([sys.executable, "-m", "lftop.runs.supervisor", str(run_dir.path)], check=True, timeout=60)
    shown = lftop.json("show", run, "--json")
    assert shown["state"] == "failed" and shown["failure"]["kind"] == "start"
    assert str(tmp_path / "gone" / "python") in shown["failure"]["message"]


def test_resume_from_a_removed_working_directory_changes_nothing(lftop, tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    profile = stand_in_profile(tmp_path, str(tmp_path / "out"))
    result = subprocess.run([sys.executable, "-m", "lftop", "--home", str(lftop.home), "launch", str(profile), "--json"],
                            capture_output=True, text=True, cwd=cwd, check=True)
    run = json.loads(result.stdout)["run"]
    wait_for(own_checkpoint_written(lftop, run), 60, "the stand-in's checkpoint")
    lftop("stop", run)
    cwd.rmdir()
    before = (lftop.json("show", run, "--json")["state"], (lftop.home / "runs" / run / "events.jsonl").read_text())
    refused = lftop("resume", run, check=False)
    assert refused.returncode == 1 and "working directory" in refused.stderr and str(cwd) in refused.stderr
    after = (lftop.json("show", run, "--json")["state"], (lftop.home / "runs" / run / "events.jsonl").read_text())
    assert after == before


def test_another_runs_checkpoint_is_only_taken_when_named(lftop, tmp_path):
    """A checkpoint the run did not write (another run's, LlamaBoard's) is never picked by itself; --from
    takes it explicitly."""
    out = tmp_path / "out"
    run = lftop.json("launch", str(stand_in_profile(tmp_path, str(out))), "--json")["run"]
    wait_for(own_checkpoint_written(lftop, run), 60, "the stand-in's checkpoint")
    lftop("stop", run)
    foreign = out / "checkpoint-900"
    foreign.mkdir()
    (foreign / "trainer_state.json").write_text('{"global_step": 900}')
    assert lftop.json("show", run, "--json")["checkpoints"] == [5]
    assert lftop.json("resume", run, "--json")["step"] == 5
    lftop("stop", run)
    assert lftop.json("resume", run, "--from", str(foreign), "--json")["step"] == 900
    lftop("stop", run)
