"""`lftop demo` in a real tmux session: the GPU rows, a loss sparkline, pause with p and resume with r."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SLOWDOWN, needs_llamafactory

pytestmark = [pytest.mark.tmux, pytest.mark.train, needs_llamafactory,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

SPARK = set("▁▂▃▄▅▆▇█")


class Tmux:
    def __init__(self, socket: Path):
        self.socket = str(socket)

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "demo")

    def wait_for(self, predicate, timeout: float, what: str, progress=None) -> str:
        """Poll the screen until `predicate` holds. With `progress`, the deadline is `timeout` after the last time
        progress() changed: a trainer slowed by a busy machine is waited for as long as it moves."""
        deadline = time.monotonic() + timeout * SLOWDOWN
        text, moved = "", progress() if progress else None
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            if progress and (now := progress()) != moved:
                moved, deadline = now, time.monotonic() + timeout * SLOWDOWN
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{text}")


def run_state(home: Path) -> str:
    runs = list((home / "runs").glob("*/state"))
    return runs[0].read_text().strip() if runs else ""


def log_size(home: Path) -> int:
    return sum(log.stat().st_size for log in (home / "runs").glob("*/training.log"))


def test_demo_in_tmux_pause_and_resume(tmp_path, tiny):
    home = tmp_path / "home"
    shutil.copytree(tiny.root, home / "tiny")  # the demo would build the same model; reuse it
    tmux = Tmux(tmp_path / "tmux.sock")
    command = f"LFTOP_HOME={home} TERM=xterm-256color {sys.executable} -m lftop demo; sleep 600"
    tmux("new-session", "-d", "-s", "demo", "-x", "100", "-y", "30", command)
    try:
        screen = tmux.wait_for(lambda s: "RTX 4090" in s and "running" in s and "loss" in s, 180, "a running demo")
        assert screen.count("RTX 4090") == 2  # both simulated GPU rows
        screen = tmux.wait_for(lambda s: any(line.count("▁") + sum(line.count(c) for c in SPARK - {"▁"}) > 10
                                             for line in s.splitlines() if "loss" in line), 60, "a loss sparkline")
        tmux("send-keys", "-t", "demo", "p")
        tmux.wait_for(lambda s: "paused" in s and run_state(home) == "paused", 120, "paused after p")
        tmux("send-keys", "-t", "demo", "r")
        tmux.wait_for(lambda s: "completed" in s, 120, "completed after r", progress=lambda: log_size(home))
        events = [json.loads(l)["event"] for l in next((home / "runs").glob("*/events.jsonl")).read_text().splitlines()]
        # the screen says completed only once the process is gone, and the event is written before the state
        assert "paused" in events and "resumed" in events and events.count("completed") >= 1, events
        tmux("send-keys", "-t", "demo", "q")
        tmux.wait_for(lambda s: "Launch" not in s, 10, "lftop to exit")
    finally:
        subprocess.run(["tmux", "-S", str(tmp_path / "tmux.sock"), "kill-server"], capture_output=True)
