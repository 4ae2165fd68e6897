"""The app's CPU share and memory on the dashboard, beside toolong following the same log; first-frame time.

    python benchmarks/tui_cost.py [--seconds 60]

Both programs run in real tmux sessions (160x45) for the same time while a run writes its log: a real
LLaMA-Factory run's (benchmarks/data/training.log, built as log_parse.py builds its real row: start-up block,
then the training section with its counters rewritten) replayed a tqdm frame at a time, with the metric dicts
and checkpoint-save blocks that follow each frame, every 0.1 s (tqdm's fastest redraw; the run itself was 10x
faster), and a trainer_log.jsonl point per metric dict, as LLaMA-Factory's callback writes. A second row
follows a synthetic log (a made-up frame and metric dict per line, 10 lines a second), as earlier rounds
measured. lftop shows 8 simulated GPUs. toolong is installed into its own virtual environment on first use
(it needs Textual 0.x). Then the time to the first frame of `lftop` is measured beside a bare Textual
app's, both started the same way on a pseudo-terminal the benchmark reads, alternately, many times (median).
lftop's bytecode is compiled first, as a wheel install does (an editable install under
PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start, and Textual's are compiled).
Then the time from a write (a log line; a loss point in trainer_log.jsonl) to the screen, read on a pty.
Goals: at most a fifth of toolong's CPU and under 80 MiB; write -> screen within 100 ms (median); first frame
within 1.3x of the bare app's.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import psutil

from log_parse import make_real

REPLAY_MB = 2.0  # the real run's training section about 90 times: 27,000 steps, over 13 minutes of writing

WRITER = """
import ast, json, re, sys, time
replay, log, jsonl = sys.argv[1:4]
data = open(replay, "rb").read()
frames = [m.start() for m in re.finditer(rb"\\r *\\d+%\\|", data)]  # where each tqdm frame begins
with open(log, "ab") as f:
    f.write(data[:frames[0]])  # the start-up block at once
logged = 0
for start, end in zip(frames, frames[1:] + [len(data)]):  # a frame with what follows it, one write each
    chunk = data[start:end]
    with open(log, "ab") as f:
        f.write(chunk)
    total = int(re.search(rb"\\d+/(\\d+) \\[", chunk).group(1))
    for d in re.findall(rb"\\{'loss'[^\\n]*\\}", chunk):  # LLaMA-Factory's callback writes a point per dict
        logged += 1
        values = ast.literal_eval(d.decode())
        with open(jsonl, "a") as f:
            f.write(json.dumps({"current_steps": 5 * logged, "total_steps": total, "loss": float(values["loss"]),
                                "lr": float(values["learning_rate"]), "epoch": float(values["epoch"]),
                                "elapsed_time": "0:00:10"}) + "\\n")
    time.sleep(0.1)  # tqdm's mininterval: the fastest a real bar redraws
"""

SYNTHETIC = """
import json, sys, time
replay, log, jsonl = sys.argv[1:4]
step = 0
while True:  # a made-up line per step: a tqdm frame and a metric dict
    step += 1
    with open(log, "a") as f:
        f.write(f"\\r{step % 100:3d}%|#####     | {step}/100000 [00:10<01:00,  9.9it/s]"
                f"\\r{{'loss': '{2 + 1 / step:.4g}', 'grad_norm': '0.45', 'learning_rate': '1e-4', 'epoch': '{step / 1000:.4g}'}}\\n")
    with open(jsonl, "a") as f:
        f.write(json.dumps({"current_steps": step, "total_steps": 100000, "loss": 2 + 1 / step, "lr": 1e-4,
                            "epoch": step / 1000, "elapsed_time": "0:00:10"}) + "\\n")
    time.sleep(0.1)
"""

BARE = """
from textual.app import App
from textual.widgets import Static
class Bare(App):
    def compose(self):
        yield Static("bare textual app ready")
Bare().run()
"""


def toolong() -> Path:
    venv = Path(tempfile.gettempdir()) / "lftop-bench-toolong"
    tl = venv / "bin" / "tl"
    if not tl.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "toolong"], check=True)
    return tl


def make_run(home: Path, writer_code: str = WRITER) -> subprocess.Popen:
    run = home / "runs" / "bench-run"
    out = home / "saves" / "bench"
    run.mkdir(parents=True)
    out.mkdir(parents=True)
    replay = home / "replay.log"
    make_real(replay, REPLAY_MB)
    writer = subprocess.Popen([sys.executable, "-c", writer_code, str(replay), str(run / "training.log"),
                               str(out / "trainer_log.jsonl")])
    proc = psutil.Process(writer.pid)
    (run / "run.json").write_text(json.dumps({"id": "bench-run", "pid": writer.pid, "create_time": proc.create_time(),
                                              "output_dir": str(out), "gpus": "0,1", "nproc": 2, "created": time.time(),
                                              "command": [sys.executable, "-c", "writer"], "args": {}, "env": {}}))
    (run / "state").write_text("running\n")
    return writer


class Session:
    def __init__(self, socket: Path, name: str, command: str, env: dict):
        self.socket, self.name = str(socket), name
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        subprocess.run(["tmux", "-S", self.socket, "new-session", "-d", "-s", name, "-x", "160", "-y", "45",
                        f"env {exports} {command}"], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True).stdout

    def process(self, needle: str) -> psutil.Process:
        pane = int(subprocess.run(["tmux", "-S", self.socket, "display", "-p", "-t", self.name, "#{pane_pid}"],
                                  capture_output=True, text=True).stdout)
        procs = [psutil.Process(pane)] + psutil.Process(pane).children(recursive=True)
        return next(p for p in procs if needle in " ".join(p.cmdline()))

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-session", "-t", self.name], capture_output=True)


def cost(session: Session, needle: str, seconds: float) -> tuple[float, float]:
    time.sleep(3)  # past start-up
    proc = session.process(needle)
    if not seconds:
        session.kill()
        return 0.0, 0.0
    before = sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    share = (sum(proc.cpu_times()[:2]) - before) / seconds
    rss = proc.memory_info().rss / (1 << 20)
    session.kill()
    return share, rss


def first_frame(argv: list[str], env: dict, marker: bytes) -> float:
    """Seconds from spawning `argv` on a fresh 160x45 pseudo-terminal to the marker reaching the terminal.

    The benchmark reads the pty itself (no tmux polling competing for the CPU); the program sees a real terminal.
    """
    main_fd, sub_fd = pty.openpty()
    fcntl.ioctl(sub_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=sub_fd, stdout=sub_fd, stderr=sub_fd, env={**os.environ, **env},
                            start_new_session=True)
    os.close(sub_fd)
    seen = b""
    try:
        while marker not in seen:
            if time.monotonic() - started > 60 or not select.select([main_fd], [], [], 60)[0]:
                raise RuntimeError(f"{argv}: no first frame")
            seen = seen[-len(marker):] + os.read(main_fd, 1 << 16)
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        os.close(main_fd)


def latency(argv: list[str], env: dict, home: Path, samples: int) -> dict[str, list[float]]:
    """Seconds from a write to the screen: a log line (the log tail) and a loss point (trainer_log.jsonl, the
    numbers line), each appended while lftop runs on a pseudo-terminal the benchmark reads."""
    log = home / "runs" / "bench-run" / "training.log"
    jsonl = home / "saves" / "bench" / "trainer_log.jsonl"
    main_fd, sub_fd = pty.openpty()
    fcntl.ioctl(sub_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
    proc = subprocess.Popen(argv, stdin=sub_fd, stdout=sub_fd, stderr=sub_fd, env={**os.environ, **env},
                            start_new_session=True)
    os.close(sub_fd)

    def until(markers: list[bytes], since: float, limit: float = 10) -> list[float]:
        """Seconds from `since` until each marker has reached the terminal (one reader: nothing is missed)."""
        seen, when = b"", [0.0] * len(markers)
        while not all(when):
            if time.monotonic() - since > limit or not select.select([main_fd], [], [], limit)[0]:
                raise RuntimeError(f"{markers!r} never reached the screen")
            seen += os.read(main_fd, 1 << 16)
            for k, marker in enumerate(markers):
                if not when[k] and marker in seen:
                    when[k] = time.monotonic() - since
            seen = seen[-max(len(m) for m in markers):]
        return when

    found: dict[str, list[float]] = {"log line": [], "loss point": []}
    try:
        until([b"Runs"], time.monotonic(), 60)
        time.sleep(3)  # the run selected, its log followed
        for i in range(samples):  # one logging step each: a log line and a loss point, written together
            time.sleep(0.6 + (i % 5) / 10)
            loss = f"{7 + i / 1e4:.4f}"
            written = time.monotonic()
            with open(log, "a") as f:
                f.write(f"latency probe {i:04d}\n")
            with open(jsonl, "a") as f:
                f.write(json.dumps({"current_steps": 200000 + i, "total_steps": 300000, "loss": float(loss)}) + "\n")
            line, point = until([f"probe {i:04d}".encode(), f"loss {loss}".encode()], written)
            found["log line"].append(line)
            found["loss point"].append(point)
    finally:
        proc.kill()
        proc.wait()
        os.close(main_fd)
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--first-frame-only", action="store_true")
    ap.add_argument("--starts", type=int, default=15, help="first-frame measurements of each program")
    ap.add_argument("--latency", type=int, default=40, help="write -> screen measurements of each kind")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("needs tmux")
    tl = toolong()
    work = Path(tempfile.mkdtemp(prefix="lftop-tui-bench-"))
    socket = work / "tmux.sock"
    script = Path(sys.executable).with_name("lftop")  # the console script users run
    lftop_argv = [str(script)] if script.exists() else [sys.executable, "-m", "lftop"]
    Session(socket, "keep", "sleep 86400", {})  # holds the tmux server up between the measured sessions
    writer = None
    try:
        if args.first_frame_only:
            args.seconds = 0
        for name, code in (("synthetic", SYNTHETIC), ("real", WRITER)):  # the real run's home is kept for latency
            home = work / name
            env = {"LFTOP_HOME": str(home), "LFTOP_SIMULATE": "8", "TERM": "xterm-256color"}
            writer = make_run(home, code)
            lf_cpu, lf_rss = cost(Session(socket, "lftop", " ".join(lftop_argv), env), "lftop", args.seconds)
            log = home / "runs" / "bench-run" / "training.log"
            tl_cpu, tl_rss = cost(Session(socket, "toolong", f"{tl} {log}", env), "tl", args.seconds)
            writer.kill()
            if args.seconds:
                print(f"{name} log:")
                print(f"  lftop dashboard : CPU {lf_cpu:6.1%} of a core, RSS {lf_rss:5.0f} MiB")
                print(f"  toolong same log: CPU {tl_cpu:6.1%} of a core, RSS {tl_rss:5.0f} MiB")
                print(f"  CPU ratio lftop/toolong {lf_cpu / tl_cpu:.2f} (goal <= 0.20); RSS goal < 80 MiB")
        if args.latency:  # quiet: each probe is the only write
            for kind, seconds in latency(lftop_argv, env, home, args.latency).items():
                ordered = sorted(seconds)
                p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
                print(f"write -> screen, {kind}: median {statistics.median(ordered) * 1e3:.0f} ms, "
                      f"p95 {p95 * 1e3:.0f} ms over {len(ordered)} (goal median <= 100 ms)")
        import lftop

        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(lftop.__file__).parent)], check=True)
        bare_file = work / "bare.py"
        bare_file.write_text(BARE)
        bare, ours = [], []
        for _ in range(args.starts):  # alternated, so a slow spell of this shared machine hits both
            bare.append(first_frame([sys.executable, str(bare_file)], env, b"ready"))
            ours.append(first_frame(lftop_argv, env, b"Runs"))
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"first frame (median of {args.starts}): lftop {o * 1e3:.0f} ms, bare Textual app {b * 1e3:.0f} ms, "
              f"ratio {o / b:.2f} (goal <= 1.3); fastest {min(ours) * 1e3:.0f} vs {min(bare) * 1e3:.0f} ms")
    finally:
        if writer:
            writer.kill()
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)


if __name__ == "__main__":
    main()
