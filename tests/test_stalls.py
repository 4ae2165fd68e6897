"""Stalls are flagged by the run's own supervisor, and the notify command hears about them (and about a run's
end) with no lftop open. Stand-in trainers; LLaMA-Factory's trainer_log.jsonl format."""

from __future__ import annotations

import json
import os
import time

from conftest import wait_for
from lftop.runs.rundir import RunDir
from lftop.runs.stalls import StallWatch

# Logs three steps the way LLaMA-Factory's LogCallback does, then hangs without a word (a stuck collective).
STALLER = """#!/bin/sh
out=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['output_dir'])" "$3/run.json")
mkdir -p "$out"
echo running > "$3/state"
for i in 1 2 3; do
  echo "{\\"current_steps\\": $i, \\"total_steps\\": 100, \\"loss\\": 1.5, \\"elapsed_time\\": \\"0:00:0$i\\"}" >> "$out/trainer_log.jsonl"
  echo "step $i"
  sleep 0.2
done
exec sleep 600
"""


def setup(lftop, tmp_path, trainer_text: str, stall_after: float = 2):
    trainer = tmp_path / "trainer"
    trainer.write_text(trainer_text)
    trainer.chmod(0o755)
    heard = tmp_path / "heard.jsonl"
    hook = tmp_path / "notify"
    hook.write_text(f"#!/bin/sh\ncat >> {heard}\n")
    hook.chmod(0o755)
    config = lftop.home / "config.toml"
    config.write_text(f'[notify]\ncommand = ["{hook}"]\n')
    config.chmod(0o600)
    profile = tmp_path / "p.toml"
    profile.write_text(f'[launch]\ngpus = ""\npython = "{trainer}"\nstall_after = {stall_after}\n[train]\n'
                       f'model_name_or_path = "x"\nstage = "sft"\noutput_dir = "{tmp_path / "out"}"\nlogging_steps = 1\n')
    return profile, heard


def heard_events(heard):
    return [json.loads(line) for line in heard.read_text().splitlines()] if heard.exists() else []


def test_a_run_whose_steps_stop_is_flagged_stalled_and_the_notify_command_hears(lftop, tmp_path):
    profile, heard = setup(lftop, tmp_path, STALLER)
    run = lftop.json("launch", str(profile), "--json")["run"]
    shown = wait_for(lambda: (s := lftop.json("show", run, "--json"))["stalled"] and s, 60, "the stall flag")
    assert shown["state"] == "running" and shown["since_last_step"] >= 2 and shown["step"] == 3
    assert any(a.startswith("stalled") for a in shown["alerts"])
    assert [r["stalled"] for r in lftop.json("ls", "--json") if r["run"] == run] == [True]
    events = [json.loads(line) for line in (lftop.home / "runs" / run / "events.jsonl").read_text().splitlines()]
    assert [e for e in events if e["event"] == "stalled"][0]["step"] == 3
    stall = wait_for(lambda: [e for e in heard_events(heard) if e["event"] == "stalled"], 30, "the notify command")
    assert stall[0]["run"] == run and stall[0]["step"] == 3 and "no new step" in stall[0]["reason"]
    lftop("stop", run)
    assert lftop.json("show", run, "--json")["stalled"] is False


def test_a_completed_run_is_notified_and_a_hanging_command_is_killed(lftop, tmp_path):
    profile, heard = setup(lftop, tmp_path, "#!/bin/sh\nexit 0\n")
    run = lftop.json("launch", str(profile), "--json")["run"]
    done = wait_for(lambda: [e for e in heard_events(heard) if e["event"] == "completed"], 60, "the completed notice")
    assert done[0]["run"] == run and done[0]["state"] == "completed"

    (tmp_path / "notify").write_text("#!/bin/sh\nexec sleep 60\n")  # hangs: killed after 10 s, the run unaffected
    run = lftop.json("launch", str(profile), "--force", "--json")["run"]
    wait_for(lambda: lftop.json("show", run, "--json")["state"] == "completed", 60, "completion")
    events = lambda: [json.loads(x) for x in (lftop.home / "runs" / run / "events.jsonl").read_text().splitlines()]  # noqa: E731
    failed = wait_for(lambda: [e for e in events() if e["event"] == "notify failed"], 60, "the killed notify command")
    assert "killed after 10 s" in failed[0]["reason"]


def test_a_notify_command_in_a_file_others_can_write_never_runs(lftop, tmp_path):
    profile, heard = setup(lftop, tmp_path, "#!/bin/sh\nexit 0\n")
    (lftop.home / "config.toml").chmod(0o666)
    run = lftop.json("launch", str(profile), "--json")["run"]
    wait_for(lambda: any(e.get("event") == "exited" for e in _events(lftop, run)), 60, "the run to end")
    assert not heard.exists()


def _events(lftop, run):
    return [json.loads(x) for x in (lftop.home / "runs" / run / "events.jsonl").read_text().splitlines()]


def test_a_stall_on_gpus_busy_at_idle_power_is_named_a_likely_collective_hang(lftop, tmp_path):
    """The simulated GPU 0 reads busy while drawing idle power (LFTOP_SIMULATE's hang=0), as a rank spinning in
    a stuck all-reduce does; a run stalled on it is named a likely NCCL hang. On another GPU it is not."""
    profile, _ = setup(lftop, tmp_path, STALLER)
    profile.write_text(profile.read_text().replace('gpus = ""', 'gpus = "0"'))
    sim = {"LFTOP_SIMULATE": "2,hang=0"}
    run = lftop.json("launch", str(profile), "--json", env=sim)["run"]
    shown = wait_for(lambda: (s := lftop.json("show", run, "--json", env=sim))["stall_hint"] and s, 60, "the hint")
    assert shown["stalled"] and "likely a collective (NCCL) hang: GPU(s) 0" in shown["stall_hint"]
    lftop("stop", run)
    other = tmp_path / "other.toml"
    other.write_text(profile.read_text().replace('gpus = "0"', 'gpus = "1"').replace(str(tmp_path / "out"),
                                                                                     str(tmp_path / "out1")))
    run = lftop.json("launch", str(other), "--json", env=sim)["run"]
    wait_for(lambda: lftop.json("show", run, "--json", env=sim)["stalled"]
             and lftop.json("gpus", "--json", env=sim)["gpus"]["devices"][1]["util_gpu"] >= 80, 60, "a busy stall")
    assert lftop.json("show", run, "--json", env=sim)["stall_hint"] is None  # busy at full power: no such hint
    lftop("stop", run)


def test_a_resumed_run_is_not_stalled_by_its_last_attempts_old_log(tmp_path):
    """The log of a run resumed after an hour ends in its last attempt's "Saving model checkpoint" line: its
    silence counts from the new attempt's start, not from that line."""
    run = RunDir(tmp_path / "runs" / "r1")
    run.path.mkdir(parents=True)
    run.write_meta({"id": "r1", "output_dir": str(tmp_path / "out"), "launch": {"stall_after": 30}})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "trainer_log.jsonl").write_text('{"current_steps": 500, "total_steps": 1000}\n')
    run.log.write_text("[INFO|trainer.py:3815] >> Saving model checkpoint to out/checkpoint-500\n")
    os.utime(run.log, (time.time() - 3600, time.time() - 3600))
    watch = StallWatch.of(run)
    start = watch.started
    assert watch.check(start + 5) is None and watch.check(start + 20) is None
    assert watch.check(start + 31) is True  # still silent past stall_after since it started: stalled
    assert [e["event"] for e in run.events()] == ["stalled"]
