"""Launch, pause, resume and stop real LLaMA-Factory runs of the tiny model on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from conftest import jsonl_steps, needs_llamafactory, write_profile
from lftop.logs import scan

pytestmark = [pytest.mark.train, needs_llamafactory]


def launch(lftop, profile: Path) -> str:
    return lftop.json("launch", str(profile), "--json")["run"]


def running_past(step: int):
    return lambda s: s["state"] == "running" and (s["step"] or 0) > step


def tree_of(run_dir: Path) -> list[int]:
    """Every live process whose environment names this run."""
    run_id = run_dir.name
    pids = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("LFTOP_RUN_ID") == run_id:
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return pids


def test_llamafactory_cli_trains_the_converted_arguments(lftop, tiny, tmp_path):
    """The foundation's promise: a profile's YAML is what llamafactory-cli itself runs."""
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=6, save_steps=3)
    shown = lftop("show-args", str(profile)).stdout
    yaml = shown.split("# LLaMA-Factory arguments\n")[1].split("\n\n")[0] + "\n"
    (tmp_path / "args.yaml").write_text(yaml)
    cli = Path(sys.executable).with_name("llamafactory-cli")
    subprocess.run([str(cli), "train", str(tmp_path / "args.yaml")], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert (out / "checkpoint-3" / "trainer_state.json").is_file()
    assert jsonl_steps(out) == [1, 2, 3, 4, 5, 6]


def test_run_survives_its_launcher_being_killed_and_a_hangup(lftop, tiny, tmp_path, home):
    """Like a dropped SSH link: SIGKILL the shell that launched, SIGHUP its whole process group."""
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=60, save_steps=1000)
    shell = subprocess.Popen(
        ["bash", "-c", f"{sys.executable} -m lftop --home {home} launch {profile} --json; sleep 300"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    run = json.loads(shell.stdout.readline())["run"]
    lftop.wait(run, lambda s: s["state"] in ("running", "starting") and s["pid"])
    os.kill(shell.pid, signal.SIGKILL)
    os.killpg(shell.pid, signal.SIGHUP)
    shell.wait()
    done = lftop.wait(run, lambda s: not s["alive"])
    assert done["state"] == "completed" and done["step"] == done["total_steps"] == 60


def _pause_resume(lftop, tiny, tmp_path, nproc: int):
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=300, save_steps=1000, nproc=nproc)
    run = launch(lftop, profile)
    lftop.wait(run, running_past(3))
    assert lftop("pause", run, "--wait", "--timeout", "120").returncode == 0
    paused = lftop.json("show", run, "--json")
    k = paused["checkpoints"][-1]
    assert paused["state"] == "paused" and not paused["alive"] and 0 < k < 300
    assert (out / f"checkpoint-{k}" / "trainer_state.json").is_file()
    assert tree_of(Path(lftop.json("show", run, "--json")["log"]).parent) == []
    if nproc > 1:
        assert (out / f"checkpoint-{k}" / "rng_state_1.pth").is_file()  # every rank stopped and saved at k
    before = jsonl_steps(out)
    resumed = lftop.json("resume", run, "--json")
    assert resumed["step"] == k and resumed["run"] == run
    done = lftop.wait(run, lambda s: not s["alive"] and s["state"] != "starting", timeout=300)
    assert done["state"] == "completed", done
    after = jsonl_steps(out)[len(before):]
    assert after[0] == k + 1 and all(b > a for a, b in zip(after, after[1:], strict=False)) and after[-1] == 300
    events = [json.loads(line) for line in (Path(done["log"]).parent / "events.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "step": k}.items() <= next(e for e in events if e["event"] == "resumed").items()
    facts = scan.scan(Path(done["log"])).facts
    assert facts["resumed_from"] == f"{out}/checkpoint-{k}" and facts["resumed_step"] == str(k)
    return out, Path(done["log"])


def test_pause_then_resume_one_process(lftop, tiny, tmp_path):
    out, log = _pause_resume(lftop, tiny, tmp_path, nproc=1)
    history = scan.scan(log)  # training.log holds both processes: every step once
    assert sorted(history.points) == list(range(1, 301))


def test_pause_then_resume_two_ranks_under_torchrun(lftop, tiny, tmp_path):
    _pause_resume(lftop, tiny, tmp_path, nproc=2)


def test_resume_skips_a_checkpoint_killed_while_being_written(lftop, tiny, tmp_path):
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=400, save_steps=20)
    run = launch(lftop, profile)
    lftop.wait(run, lambda s: 20 in s["checkpoints"] and s["state"] == "running")
    show = lftop.json("show", run, "--json")
    for pid in tree_of(Path(show["log"]).parent):
        os.kill(pid, signal.SIGKILL)
    lost = lftop.wait(run, lambda s: not s["alive"])
    assert lost["state"] == "lost" and lost["log_tail"]
    newest = max(lost["checkpoints"])
    partial = out / f"checkpoint-{newest + 20}"  # may exist already: killed while the trainer saved it
    partial.mkdir(exist_ok=True)
    (partial / "adapter_model.safetensors").write_bytes(b"half written")
    assert lftop.json("resume", run, "--json")["step"] == newest
    done = lftop.wait(run, lambda s: not s["alive"] and s["state"] != "starting", timeout=300)
    assert done["state"] == "completed" and done["step"] == 400


def test_stop_leaves_no_process_of_a_torchrun_tree(lftop, tiny, tmp_path):
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=5000, save_steps=10000, nproc=2)
    run = launch(lftop, profile)
    show = lftop.wait(run, running_past(2))
    run_dir = Path(show["log"]).parent
    assert len(tree_of(run_dir)) >= 3  # supervisor's child torchrun and two workers
    lftop("stop", run, "--grace", "5")
    assert lftop.json("show", run, "--json")["state"] == "stopped"  # stopped: nothing of the run is left
    assert tree_of(run_dir) == [] and not psutil.pid_exists(show["pid"]) or psutil.Process(show["pid"]).status() == "zombie"


def test_refusals_protect_checkpoints_and_live_runs(lftop, tiny, tmp_path):
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=3000, save_steps=5)
    run = launch(lftop, profile)
    lftop.wait(run, lambda s: s["checkpoints"] and s["state"] == "running")
    second = lftop("launch", str(profile), check=False)
    assert second.returncode == 1 and "in use by live run" in second.stderr
    assert lftop("resume", run, check=False).returncode == 1
    lftop("pause", run, "--wait")
    fresh = lftop("launch", str(profile), check=False)
    assert fresh.returncode == 1 and "checkpoint-" in fresh.stderr and f"lftop resume {run}" in fresh.stderr

    results = []  # two lftops resume at once: exactly one launches
    threads = [threading.Thread(target=lambda: results.append(lftop("resume", run, check=False))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.returncode for r in results) == [0, 1]
    lftop("stop", run)


def test_a_real_out_of_memory_error_is_recognised(lftop, tiny, tmp_path):
    """torch.OutOfMemoryError raised inside training_step, as on a full GPU."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import transformers, torch\n"
        "_step = transformers.Trainer.training_step\n"
        "def training_step(self, *a, **k):\n"
        "    if self.state.global_step >= 3:\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 11.91 GiB of which 406.38 MiB is free.')\n"
        "    return _step(self, *a, **k)\n"
        "transformers.Trainer.training_step = training_step\n")
    out = tmp_path / "out"
    profile = write_profile(tmp_path / "p.toml", tiny, out, max_steps=50)
    profile.write_text(profile.read_text().replace("[launch]", f'[launch]\nenv = {{ PYTHONPATH = "{hook}" }}'))
    run = launch(lftop, profile)
    failed = lftop.wait(run, lambda s: not s["alive"] and s["state"] != "starting")
    assert failed["state"] == "failed" and failed["failure"]["kind"] == "oom"
    errors = json.loads(lftop("scan", failed["log"], "--json").stdout)["errors"]
    assert errors[0]["kind"] == "oom" and "2.00 GiB on GPU 0" in errors[0]["message"]
