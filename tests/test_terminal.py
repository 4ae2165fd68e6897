"""`lftop` on a real pseudo-terminal: NO_COLOR, --no-mouse, the bell, the terminal going away, and `kill`."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import psutil
import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminals as on the servers lftop runs on")

SGR = re.compile(rb"\x1b\[([0-9;]*)m")
OSC = re.compile(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")  # e.g. the pointer shape; BEL ends these too


class Terminal:
    """`python -m lftop` as the session leader of a fresh 100x30 pseudo-terminal that this test reads."""

    def __init__(self, home, *args: str, **env: str):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become lftop
            os.execve(sys.executable, [sys.executable, "-m", "lftop", *args],
                      {**os.environ, "LFTOP_HOME": str(home), "LFTOP_SIMULATE": "2", "TERM": "xterm-256color", **env})
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            if time.monotonic() > deadline or not select.select([self.fd], [], [], deadline - time.monotonic())[0]:
                raise AssertionError(f"no {marker!r} on the terminal; it shows {self.seen[-2000:]!r}")
            try:
                self.seen += os.read(self.fd, 1 << 16)
            except OSError as exc:  # EIO: lftop is gone
                raise AssertionError(f"lftop left before {marker!r}: {self.seen[-2000:]!r}") from exc
        return self.seen

    def drain(self) -> None:
        while select.select([self.fd], [], [], 0.2)[0]:
            try:
                self.seen += os.read(self.fd, 1 << 16)
            except OSError:
                return

    def exit_code(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def colours(frame: bytes) -> set[tuple[int, int, int] | int]:
    """The 256-colour indices and RGB triples a frame uses."""
    found: set = set()
    for params in SGR.findall(frame):
        p = [int(x) for x in params.split(b";") if x]
        i = 0
        while i < len(p):
            if p[i] in (38, 48) and i + 2 < len(p) and p[i + 1] == 5:
                found.add(p[i + 2])
                i += 3
            elif p[i] in (38, 48) and i + 4 < len(p) and p[i + 1] == 2:
                found.add(tuple(p[i + 2:i + 5]))
                i += 5
            else:
                i += 1
    return found


def grey(colour) -> bool:
    if isinstance(colour, tuple):
        return colour[0] == colour[1] == colour[2]
    return colour >= 232 or colour in (0, 7, 8, 15, 16, 231)


def test_no_color_draws_in_greys_only(home):
    """NO_COLOR (no-color.org) is honoured as Textual does it: the same screen in greys. Without it, hues."""
    for env, want_hues in (({"NO_COLOR": "1"}, False), ({}, True)):
        term = Terminal(home, **env)
        try:
            frame = term.read_until(b"RTX 4090")  # the simulated GPUs' rows: a full dashboard
        finally:
            os.close(term.fd)
            term.exit_code(10)
        used = colours(frame)
        assert used, "no colour codes at all: the check below would prove nothing"
        assert any(not grey(c) for c in used) == want_hues, (env, sorted(map(str, used)))


def test_closing_the_terminal_ends_lftop_at_once(home):
    """A dropped SSH link or a killed tmux pane: the kernel hangs up the terminal. lftop used to hang for ever
    now and then when that came right after the first frame (Textual's output thread dies on the failed write
    and the shutdown waits on it); a few tries make that window likely to be hit."""
    for _ in range(8):
        term = Terminal(home)
        term.read_until(b"Runs")
        os.close(term.fd)  # hang up
        assert term.exit_code(timeout=10) == 0


def test_kill_restores_the_terminal(home):
    term = Terminal(home)
    try:
        term.read_until(b"RTX 4090")
        os.kill(term.pid, signal.SIGTERM)
        code = term.exit_code(timeout=10)
        term.drain()
    finally:
        os.close(term.fd)
    assert code == 0
    assert b"\x1b[?1049l" in term.seen.rsplit(b"RTX 4090", 1)[-1]  # left the alternate screen: the shell is back


def test_no_mouse_asks_the_terminal_for_no_mouse_reports(home):
    """Over SSH, mouse reporting fills the link with motion events; --no-mouse never turns it on."""
    for args, mouse in (((), True), (("--no-mouse",), False)):
        term = Terminal(home, *args)
        try:
            frame = term.read_until(b"Runs")
        finally:
            os.close(term.fd)
            term.exit_code(10)
        assert (b"\x1b[?1000h" in frame) == mouse, args


def test_a_run_that_finishes_rings_the_bell_and_says_so(home, tmp_path):
    """A run is a process plus a directory: this one is a real process and a real run directory that lftop
    watches; when the run ends (its state completed, its process gone) the terminal's bell rings."""
    proc = subprocess.Popen(["sleep", "120"])
    run, out = home / "runs" / "bell-run", tmp_path / "out"
    run.mkdir(parents=True)
    out.mkdir()
    (run / "run.json").write_text(json.dumps({"id": "bell-run", "pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(),
                                              "output_dir": str(out), "gpus": "0", "nproc": 1, "created": time.time(),
                                              "command": ["sleep", "120"], "args": {}, "env": {}}))
    (run / "state").write_text("running\n")
    term = Terminal(home, "--interval", "0.25")
    try:
        term.read_until(b"running")
        assert b"\x07" not in OSC.sub(b"", term.seen)
        (run / "state").write_text("completed\n")
        proc.kill()
        proc.wait()
        term.read_until(b"bell-run completed", timeout=20)  # the notification
        assert b"\x07" in OSC.sub(b"", term.seen)  # the bell
    finally:
        proc.kill()
        os.close(term.fd)
        term.exit_code(10)
