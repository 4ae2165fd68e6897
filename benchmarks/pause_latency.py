"""Pause latency of a real LLaMA-Factory run (the tiny model on the CPU), beside one step and one save.

    python benchmarks/pause_latency.py [--home DIR]

From the pause request to the training process's exit, in seconds and in optimizer steps; next to the
time of one step (from the run's own step rate) and of one checkpoint save (the spread of file times in a
periodic checkpoint), both measured in the same run. Needs the train extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lftop import ops, tinymodel
from lftop.profiles import load
from lftop.runs.rundir import RunDir
from lftop.runs.status import status

PROFILE = """[profile]
extends = "{demo}"
[launch]
nproc = {nproc}
[train]
model_name_or_path = "{tiny}/model"
dataset_dir = "{tiny}/data"
output_dir = "{out}"
max_steps = 5000
save_steps = 25
"""


def measure(home: Path, tiny: Path, nproc: int) -> None:
    out = home / f"out-{nproc}"
    profile = home / f"bench-{nproc}.toml"
    demo = Path(__file__).resolve().parents[1] / "profiles" / "demo-cpu.toml"
    profile.write_text(PROFILE.format(demo=demo, tiny=tiny, out=out, nproc=nproc))
    run = ops.launch(ops.plan(load(profile)), home)
    while not (out / "checkpoint-50" / "trainer_state.json").exists():
        time.sleep(0.2)
    before = status(run).step or 0
    requested = time.monotonic()
    ops.pause(run)
    while status(run).alive:
        time.sleep(0.02)
    seconds = time.monotonic() - requested
    paused_at = next(e["step"] for e in RunDir(run.path).events() if e["event"] == "paused")
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    timed = [(r["current_steps"], r["elapsed_time"]) for r in rows if "loss" in r]
    (s0, t0), (s1, t1) = timed[5], timed[-1]
    seconds_of = lambda t: sum(float(x) * 60 ** i for i, x in enumerate(reversed(t.split(":"))))
    step_time = (seconds_of(t1) - seconds_of(t0)) / max(1, s1 - s0)
    files = [p.stat().st_mtime for p in (out / "checkpoint-25").iterdir() if p.is_file()]
    save_time = max(files) - min(files)
    print(f"{nproc} rank(s): pause took {seconds:.2f} s and {paused_at - before} step(s) "
          f"(one step {step_time * 1e3:.0f} ms, one checkpoint save {save_time * 1e3:.0f} ms; "
          f"the rest is the process's exit: final save, plots, interpreter teardown)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="lftop-bench-"))
    tiny = tinymodel.build(home / "tiny").root
    for nproc in (1, 2):
        measure(home, tiny, nproc)


if __name__ == "__main__":
    main()
