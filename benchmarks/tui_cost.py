"""The app's CPU share and memory on the dashboard, beside toolong following the same log; first-frame time.

    python benchmarks/tui_cost.py [--seconds 60]

Both programs run in real tmux sessions (160x45) for the same time while a run logs 10 lines a second;
lftop shows 8 simulated GPUs. toolong is installed into its own virtual environment on first use
(it needs Textual 0.x). Then the time to the first frame of `lftop` is measured beside a bare Textual
app's, both started the same way.
Goals: at most a fifth of toolong's CPU and under 80 MiB; first frame within 1.3x of the bare app's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

WRITER = """
import json, sys, time
log, jsonl = sys.argv[1], sys.argv[2]
step = 0
while True:
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


def make_run(home: Path) -> subprocess.Popen:
    run = home / "runs" / "bench-run"
    out = home / "saves" / "bench"
    run.mkdir(parents=True)
    out.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run / "training.log"), str(out / "trainer_log.jsonl")])
    proc = psutil.Process(writer.pid)
    (run / "run.json").write_text(json.dumps({"id": "bench-run", "pid": writer.pid, "create_time": proc.create_time(),
                                              "output_dir": str(out), "gpus": "0,1", "nproc": 2, "created": time.time()}))
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


def first_frame(socket: Path, name: str, command: str, env: dict, marker: str) -> float:
    started = time.monotonic()
    session = Session(socket, name, command, env)
    while marker not in session.screen():
        if time.monotonic() - started > 60:
            raise RuntimeError(f"{name}: no first frame")
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    session.kill()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--first-frame-only", action="store_true")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("needs tmux")
    tl = toolong()
    work = Path(tempfile.mkdtemp(prefix="lftop-tui-bench-"))
    home, socket = work / "home", work / "tmux.sock"
    writer = make_run(home)
    env = {"LFTOP_HOME": str(home), "LFTOP_SIMULATE": "8", "TERM": "xterm-256color"}
    try:
        if args.first_frame_only:
            args.seconds = 0
        lf_cpu, lf_rss = cost(Session(socket, "lftop", f"{sys.executable} -m lftop", env), "lftop", args.seconds)
        log = home / "runs" / "bench-run" / "training.log"
        tl_cpu, tl_rss = cost(Session(socket, "toolong", f"{tl} {log}", env), "tl", args.seconds)
        if args.seconds:
            print(f"lftop dashboard : CPU {lf_cpu:6.1%} of a core, RSS {lf_rss:5.0f} MiB")
            print(f"toolong same log: CPU {tl_cpu:6.1%} of a core, RSS {tl_rss:5.0f} MiB")
            print(f"CPU ratio lftop/toolong {lf_cpu / tl_cpu:.2f} (goal <= 0.20); RSS goal < 80 MiB")
        bare_file = work / "bare.py"
        bare_file.write_text(BARE)
        bare = min(first_frame(socket, f"bare{i}", f"{sys.executable} {bare_file}", env, "ready") for i in range(3))
        ours = min(first_frame(socket, f"lf{i}", f"{sys.executable} -m lftop", env, "Runs") for i in range(3))
        print(f"first frame: lftop {ours * 1e3:.0f} ms, bare Textual app {bare * 1e3:.0f} ms, ratio {ours / bare:.2f} (goal <= 1.3)")
    finally:
        writer.kill()
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)


if __name__ == "__main__":
    main()
