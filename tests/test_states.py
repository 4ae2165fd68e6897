"""A run reads paused, stopped, completed or failed only once its processes are gone and its record is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from conftest import wait_for
from lftop import ops
from lftop.profiles import load
from lftop.runs.process import ProcessRef
from lftop.runs.rundir import create
from lftop.runs.state import RunState, shown
from lftop.runs.status import status


@pytest.mark.parametrize("recorded, becoming", [("completed", "finishing"), ("failed", "finishing"),
                                                ("stopped", "stopping"), ("paused", "pausing")])
def test_a_final_state_with_a_live_process_reads_as_what_it_is_becoming(home, recorded, becoming):
    """The two races CI met: the screen said completed before the event existed, and stopped while the process
    tree was alive. A run dir that says `recorded` while its recorded supervisor (a real process) lives reads as
    `becoming`, and alive; once the process is gone, as `recorded`."""
    run = create(home, "race")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    ref = ProcessRef.of(proc.pid)
    run.write_meta({"command": ["x"], "args": {}, "env": {}, "output_dir": str(home / "out"), "pid": ref.pid,
                    "create_time": ref.create_time})
    run.set_state(RunState(recorded))
    try:
        current = status(run)
        assert (current.state, current.alive) == (becoming, True)
    finally:
        proc.communicate(b"")
    current = status(run)
    assert (current.state, current.alive) == (recorded, False)


def test_the_rule_covers_every_state():
    for state in RunState:
        for alive in (True, False):
            seen = shown(state, alive, pause_requested=False, started=True)
            if seen in (RunState.PAUSED, RunState.STOPPED, RunState.COMPLETED, RunState.FAILED):
                assert not alive, (state, alive)


def test_completed_is_never_read_before_its_event(home, tmp_path):
    """Stand-in trainers that end at once, read as fast as lftop can: whenever a run reads completed, its
    process is gone and events.jsonl already says completed."""
    profile = tmp_path / "p.toml"
    profile.write_text(f'[launch]\ngpus = ""\npython = "/bin/true"\n[train]\nmodel_name_or_path = "x"\n'
                       f'stage = "sft"\noutput_dir = "{tmp_path / "out"}"\nlogging_steps = 1\n')
    plan = ops.plan(load(profile))
    for _ in range(8):
        run = ops.launch(plan, home)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = status(run)
            if current.state == RunState.COMPLETED:
                events = [json.loads(line)["event"] for line in run.events_file.read_text().splitlines()]
                assert "completed" in events and not current.alive
                assert current.process is None or not current.process.alive()
                break
        else:
            raise AssertionError(f"{run.id} never completed: {status(run)}")


def test_stop_reads_stopped_only_with_the_tree_gone(home, tmp_path):
    """A stand-in trainer that ignores SIGTERM for a moment: stop waits, and stopped means nothing is left."""
    trainer = tmp_path / "trainer"
    trainer.write_text("#!/bin/sh\ntrap 'sleep 1; exit 1' TERM\nwhile :; do sleep 0.1; done\n")
    trainer.chmod(0o755)
    profile = tmp_path / "p.toml"
    profile.write_text(f'[launch]\ngpus = ""\npython = "{trainer}"\n[train]\nmodel_name_or_path = "x"\n'
                       f'stage = "sft"\noutput_dir = "{tmp_path / "out"}"\nlogging_steps = 1\n')
    run = ops.launch(ops.plan(load(profile)), home)
    wait_for(lambda: status(run).alive, 30, "the run to start")
    wait_for(lambda: any(p.name() == "sleep" for p in _children(run)), 30,
             "the trainer's loop")
    ops.stop(run, grace=10)
    current = status(run)
    assert current.state == RunState.STOPPED and not current.alive
    events = [e["event"] for e in run.events()]
    assert events.index("stop requested") < events.index("stopped")
    assert _tagged(run.id) == []


def _children(run) -> list[psutil.Process]:
    """The run's supervisor's descendants now (none while it is not yet, or no longer, there)."""
    proc = run.process_ref().process() if run.process_ref() else None
    try:
        return proc.children(recursive=True) if proc else []
    except psutil.NoSuchProcess:
        return []


def _tagged(run_id: str) -> list[int]:
    """This user's processes that carry the run's id in their environment."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.uids().real == os.getuid() and p.environ().get("LFTOP_RUN_ID") == run_id:
                found.append(p.pid)
        except psutil.Error:
            continue
    return found
