"""Queue until it fits, on simulated GPUs that hold each live run's predicted peak (stand-in trainers)."""

from __future__ import annotations

from conftest import stand_in_trainer, wait_for

SIM = {"LFTOP_SIMULATE": "1,mem=24"}  # one 24 GiB GPU; each run below is predicted at about 17 GiB


def profile(tmp_path, name: str):
    trainer = stand_in_trainer(tmp_path)
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[launch]\ngpus = 1\npython = "{trainer}"\n[train]\n'
                    'model_name_or_path = "Qwen/Qwen2.5-7B-Instruct"\nstage = "sft"\nfinetuning_type = "lora"\n'
                    f'output_dir = "{tmp_path / name}"\ncutoff_len = 512\nper_device_train_batch_size = 1\n'
                    'bf16 = true\nlogging_steps = 1\n')
    return path


def test_runs_wait_for_room_and_start_in_queue_order(lftop, tmp_path):
    show = lambda run: lftop.json("show", run, "--json", env=SIM)  # noqa: E731
    first = lftop.json("launch", str(profile(tmp_path, "a")), "--queue", "--json", env=SIM)["run"]
    wait_for(lambda: show(first)["checkpoints"] == [5], 60, "the first run to train")
    second = lftop.json("launch", str(profile(tmp_path, "b")), "--queue", "--json", env=SIM)["run"]
    third = lftop.json("launch", str(profile(tmp_path, "c")), "--queue", "--json", env=SIM)["run"]
    assert show(second)["state"] == "queued" and "needs 17.0 GiB per GPU" in show(second)["detail"]
    assert wait_for(lambda: "behind 1 queued run" in (show(third)["detail"] or ""), 30, "the third run's place")
    listed = lftop("ls", env=SIM).stdout
    assert "#1 in queue" in listed and "#2 in queue" in listed

    lftop("stop", first, env=SIM)
    wait_for(lambda: show(second)["checkpoints"] == [5], 60, "the second run to start by itself")
    assert show(third)["state"] == "queued"  # the GPU is full again: the third waits
    lftop("stop", second, env=SIM)
    wait_for(lambda: show(third)["checkpoints"] == [5], 60, "the third run to start by itself")
    lftop("stop", third, env=SIM)
    started = {run: [e for e in _events(lftop, run) if e["event"] == "started"] for run in (second, third)}
    assert started[second][0]["time"] < started[third][0]["time"]


def test_stop_cancels_a_queued_run(lftop, tmp_path):
    first = lftop.json("launch", str(profile(tmp_path, "a")), "--json", env=SIM)["run"]
    queued = lftop.json("launch", str(profile(tmp_path, "b")), "--queue", "--json", env=SIM)["run"]
    assert lftop.json("show", queued, "--json", env=SIM)["state"] == "queued"
    refused = lftop("pause", queued, check=False, env=SIM)
    assert refused.returncode == 1 and "queued" in refused.stderr
    lftop("stop", queued, env=SIM)
    assert lftop.json("show", queued, "--json", env=SIM)["state"] == "stopped"
    never = lftop("resume", queued, check=False, env=SIM)
    assert never.returncode == 1 and "never started" in never.stderr and "Traceback" not in never.stderr
    lftop("stop", first, env=SIM)
    assert lftop.json("show", queued, "--json", env=SIM)["state"] == "stopped"  # it never starts


def _events(lftop, run: str) -> list[dict]:
    import json

    return [json.loads(line) for line in (lftop.home / "runs" / run / "events.jsonl").read_text().splitlines()]
