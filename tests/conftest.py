"""Shared fixtures: an isolated lftop home, the tiny model, and a helper to run the real `lftop` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
# Deadlines are generous and scale with LFTOP_TEST_SLOWDOWN on slow or loaded machines; tests wait for the
# condition they then assert, never for a time.
SLOWDOWN = max(1.0, float(os.environ.get("LFTOP_TEST_SLOWDOWN", "1")))


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll `condition()` until it returns something true (returned), or fail after `timeout` x SLOWDOWN s."""
    deadline = time.monotonic() + timeout * SLOWDOWN
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SLOWDOWN:.0f} s waiting for {what}")
        time.sleep(interval)


def have_llamafactory() -> bool:
    import importlib.util

    return importlib.util.find_spec("llamafactory") is not None


needs_llamafactory = pytest.mark.skipif(not have_llamafactory(), reason="needs the train extra (llamafactory)")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny Llama and toy dataset, built once per test session."""
    pytest.importorskip("transformers")
    from lftop import tinymodel

    return tinymodel.build(tmp_path_factory.mktemp("tiny") / "tiny")


def end_runs(home: Path) -> list[str]:
    """End every process of every run in `home` (a test's leftovers); the ids of runs that had one alive."""
    from lftop.runs.process import terminate, tree
    from lftop.runs.rundir import all_runs

    ended = []
    for run in all_runs(home):
        procs = tree(run.process_ref(), run.id)
        if procs:
            ended.append(run.id)
            assert terminate(procs, 5) == [], f"a process of {run.id} survived SIGKILL"
    return ended


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated lftop home; every run a test left alive in it is ended afterwards, so no leftover trainer
    slows the next test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("LFTOP_HOME", str(path))
    yield path
    end_runs(path)


class Lftop:
    """Runs `python -m lftop` with the test's home, as a user would."""

    def __init__(self, home: Path, cwd: Path):
        self.home, self.cwd = home, cwd

    def __call__(self, *args: str, check: bool = True, timeout: float = 120, env: dict | None = None):
        result = subprocess.run(
            [sys.executable, "-m", "lftop", "--home", str(self.home), *args],
            capture_output=True, text=True, timeout=timeout, cwd=self.cwd,
            env={**os.environ, "LFTOP_HOME": str(self.home), **(env or {})},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"lftop {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, **kw):
        return json.loads(self(*args, **kw).stdout)

    def wait(self, run: str, predicate, timeout: float = 180, interval: float = 0.3) -> dict:
        """Poll `lftop show --json` until predicate(show) holds."""
        deadline = time.monotonic() + timeout * SLOWDOWN
        show = {}
        while time.monotonic() < deadline:
            show = self.json("show", run, "--json")
            if predicate(show):
                return show
            time.sleep(interval)
        log = Path(show.get("log", "")).read_text(errors="replace")[-3000:] if show.get("log") else ""
        raise AssertionError(f"timed out waiting on {run}: {show}\n{log}")


@pytest.fixture
def lftop(home, tmp_path):
    return Lftop(home, tmp_path)


def write_profile(path: Path, tiny, output_dir: Path, **train) -> Path:
    """A profile extending the shipped demo profile, pointed at `tiny` and `output_dir`."""
    lines = [
        "[profile]", f'extends = "{PROFILES / "demo-cpu.toml"}"', "",
        "[launch]", f"nproc = {train.pop('nproc', 1)}", "",
        "[train]", f'model_name_or_path = "{tiny.model}"', f'dataset_dir = "{tiny.data}"', f'output_dir = "{output_dir}"',
    ]
    for key, value in train.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


# A stand-in trainer (started as `TRAINER -u worker.py RUN_DIR`): it saves checkpoint-5 into the output_dir of
# its run.json the way the worker records one (a complete checkpoint, then a "checkpoint" event), then trains
# for ever until it is stopped.
STAND_IN = """#!/bin/sh
run="$3"
out=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['output_dir'])" "$run/run.json")
mkdir -p "$out/checkpoint-5"
echo '{"global_step": 5}' > "$out/checkpoint-5/trainer_state.json"
echo '{"event": "checkpoint", "step": 5}' >> "$run/events.jsonl"
while :; do sleep 0.1; done
"""


def stand_in_trainer(folder: Path) -> Path:
    """The STAND_IN script as `folder`/trainer (written once), for a profile's `[launch] python`."""
    trainer = folder / "trainer"
    if not trainer.exists():
        trainer.write_text(STAND_IN)
        trainer.chmod(0o755)
    return trainer


async def until(pilot, condition, timeout: float = 180, what: str = "") -> None:
    """Wait in a pilot test for `condition`; the deadline is generous (30 s at least, scaled by
    LFTOP_TEST_SLOWDOWN)."""
    deadline = time.monotonic() + max(timeout, 30) * SLOWDOWN
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.25)


def stand_in_profile(tmp_path: Path, output_dir: str, name: str = "p") -> Path:
    trainer = stand_in_trainer(tmp_path)
    profile = tmp_path / f"{name}.toml"
    profile.write_text(f'[launch]\ngpus = ""\npython = "{trainer}"\n[train]\nmodel_name_or_path = "x"\n'
                       f'stage = "sft"\noutput_dir = "{output_dir}"\nlogging_steps = 1\ngradient_accumulation_steps = 3\n')
    return profile


def jsonl_steps(output_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    return [r["current_steps"] for r in rows if "loss" in r]


def pytest_collection_modifyitems(session, config, items):
    """A run that selects no test is a failure, never a silent pass."""
    if not items and not config.option.collectonly:
        raise pytest.UsageError("no tests were collected: check the test paths and -k/-m filters")
