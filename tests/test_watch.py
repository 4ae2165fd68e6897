"""File events wake the runs feed: one wake per write of a run's log, a full poll for its state (real inotify)."""

from __future__ import annotations

import os

import pytest

from conftest import wait_for
from lftop.tui.watch import RunsWatch

pytest.importorskip("watchdog")


def append(path, text: str) -> None:
    with open(path, "a") as f:  # open, write, close: what a logging step does
        f.write(text)


def replace(run, name: str, text: str) -> None:
    tmp = run / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, run / name)  # how lftop and its worker write a state or a run.json


def test_a_log_write_wakes_a_follow_once_at_most_and_a_state_change_wakes_a_full_poll(tmp_path):
    run = tmp_path / "home" / "runs" / "r1"
    run.mkdir(parents=True)
    wakes: list[bool] = []
    watch = RunsWatch(run.parent, wakes.append)
    try:
        for i in range(5):
            append(run / "training.log", f"line {i}\n")
        append(run / "notes.txt", "not a file lftop reads\n")
        replace(run, "state", "paused\n")  # one watch delivers in order: once this has come, every write before it has
        wait_for(lambda: True in wakes, 30, "the state change's wake")
        follows = wakes[:wakes.index(True)]
        # opens and closes are not events: a write is one follow (repeats may merge), not two or three
        assert follows and set(follows) == {False} and len(follows) <= 5, wakes
    finally:
        watch.stop()


def test_the_selected_runs_output_dir_is_watched_for_its_loss(tmp_path):
    root, out = tmp_path / "home" / "runs", tmp_path / "saves" / "r1"
    root.mkdir(parents=True)
    out.mkdir(parents=True)
    wakes: list[bool] = []
    watch = RunsWatch(root, wakes.append)
    try:
        watch.follow(str(out))
        append(out / "trainer_log.jsonl", '{"current_steps": 1, "loss": 2.0}\n')
        wait_for(lambda: False in wakes, 30, "a follow for trainer_log.jsonl")
    finally:
        watch.stop()


def test_a_new_run_directory_is_seen(tmp_path):
    root = tmp_path / "home" / "runs"
    root.mkdir(parents=True)
    wakes: list[bool] = []
    watch = RunsWatch(root, wakes.append)
    try:
        (root / "r2").mkdir()
        # the new directory's own watch is added as it appears: write its run.json until a wake comes
        wait_for(lambda: replace(root / "r2", "run.json", "{}") or True in wakes, 30, "a wake for the new run's run.json")
    finally:
        watch.stop()
