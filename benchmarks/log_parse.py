"""Parse rate of a large training.log beside `grep -c loss`, on a log built from a real run and on a synthetic one.

    python benchmarks/log_parse.py [--mb 1024] [--dir /tmp]

Real row: benchmarks/data/training.log is the whole stdout and stderr of a real LLaMA-Factory 0.9.5 run
(`llamafactory-cli train benchmarks/data/training.yaml`: the tiny model, 300 steps, a metric dict every 5
steps, a checkpoint every 50, each save printing the model config and tokenizer lines). The big log is its
start-up block once, then its training section (frames, dicts, checkpoint-save blocks) repeated with the
step, total and checkpoint counters rewritten, then its end.
Synthetic row: tqdm frames per step, a transformers 5.x metric dict every ten steps, an INFO line.
Each row reads one file with `grep -c loss` and with what `lftop scan` runs (lftop.logs.scan.scan, then
the summary it prints), best of three each. Goal: lftop at least half grep's rate on the real row.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from lftop.logs import scan
from lftop.logs.parse import LogParser
from lftop.logs.text import clean

REAL = Path(__file__).parent / "data" / "training.log"
BLOCK_STEPS = 1000
_COUNTER = re.compile(rb"(\d+)/300 \[|checkpoint-(\d+)")


def real_parts() -> tuple[bytes, list, bytes, int]:
    """The real log's start-up block, its training section as pieces (bytes, or a counter to rewrite:
    ("step", n) or ("ckpt", n)), its end, and the steps the section covers."""
    data = REAL.read_bytes()
    lines = data.split(b"\n")
    first = next(i for i, line in enumerate(lines) if b"/300 [" in line)  # the first training frame
    last = next(i for i, line in enumerate(lines) if b"{'train_runtime'" in line)  # the end: summary and saves
    head = b"\n".join(lines[:first]).replace(b"Total optimization steps = 300", b"Total optimization steps = {TOTAL}")
    section, end = b"\n".join(lines[first:last]) + b"\n", b"\n".join(lines[last:])
    pieces, pos = [], 0
    for m in _COUNTER.finditer(section):
        pieces.append(section[pos:m.start()])
        pieces.append(("step", int(m.group(1))) if m.group(1) else ("ckpt", int(m.group(2))))
        pos = m.end()
    pieces.append(section[pos:])
    return head, pieces, end, 300


def make_real(path: Path, megabytes: float) -> None:
    head, pieces, end, steps = real_parts()
    section = sum(len(p) if isinstance(p, bytes) else 12 for p in pieces)
    repeats = max(1, int(megabytes * (1 << 20) / section))
    total = repeats * steps
    with open(path, "wb") as out:
        out.write(head.replace(b"{TOTAL}", f"{total:,}".encode()) + b"\n")
        for r in range(repeats):
            offset, parts = r * steps, []
            for p in pieces:
                if isinstance(p, bytes):
                    parts.append(p)
                elif p[0] == "step":
                    parts.append(b"%d/%d [" % (p[1] + offset, total))
                else:
                    parts.append(b"checkpoint-%d" % (p[1] + offset))
            out.write(b"".join(parts))
        out.write(end)


def block(start: int, total: int, logging_steps: int = 10) -> bytes:
    """BLOCK_STEPS optimizer steps as transformers prints them: a tqdm frame per step (carriage
    returns, no newline) and, every `logging_steps`, the bar cleared, a metric dict, the bar redrawn."""
    parts = []
    for step in range(start, start + BLOCK_STEPS):
        pct = step * 100 // total
        parts.append(f"\r{pct:3d}%|{'█' * (pct // 10):<10}| {step}/{total} [1:23:45<45:06:12,  1.52it/s]")
        if step % logging_steps == 0:
            parts.append(f"\r{' ' * 60}\r{{'loss': '{2 + 1 / step:.4g}', 'grad_norm': '0.4521', "
                         f"'learning_rate': '{1e-4 * (1 - step / total):.4g}', 'epoch': '{step / 5000:.4g}'}}\n")
        if step % 5000 == 0:
            parts.append(f"[INFO|2026-11-22 07:52:55] llamafactory.train.callbacks:144 >> saved checkpoint-{step}\n")
    return "".join(parts).encode()


def make_synthetic(path: Path, megabytes: float) -> None:
    total = 10_000_000
    with open(path, "wb") as out:
        out.write(b"[INFO|trainer.py:1478] 2026-11-22 07:52:57,024 >>   Total optimization steps = 10,000,000\n")
        step = 1
        while out.tell() < megabytes * (1 << 20):
            out.write(block(step, total))
            step += BLOCK_STEPS


def lftop_scan(path: Path) -> tuple[float, int]:
    """What `lftop scan LOG` does: read the log, then print its summary (points, progress, last point)."""
    started = time.perf_counter()
    history = scan.scan(path)
    scan.summary_text(path, history)
    return time.perf_counter() - started, len(history.points)


def python_parse(path: Path, limit: int = 64 << 20) -> float:
    """MiB/s of the Python parser alone (as without a C compiler at install) over the log's first `limit` bytes."""
    with path.open("rb") as f:
        data = f.read(limit)
    data = data[:data.rfind(b"\n")]
    started = time.perf_counter()
    LogParser().feed_block(1, clean(data))  # text goes to the Python parser
    return len(data) / (1 << 20) / (time.perf_counter() - started)


def grep(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["grep", "-c", "loss", str(path)], capture_output=True, check=False)
    return time.perf_counter() - started


def row(name: str, path: Path) -> float:
    size_mb = path.stat().st_size / (1 << 20)
    grep(path)  # warm the page cache
    g = min(grep(path) for _ in range(3))
    t, points = min(lftop_scan(path) for _ in range(3))
    print(f"{name}: {size_mb:.0f} MiB, {points} points")
    print(f"  grep -c loss : {size_mb / g:8.1f} MiB/s")
    print(f"  lftop scan   : {size_mb / t:8.1f} MiB/s   ratio to grep {g / t:.2f}")
    print(f"  without the C scanner: {python_parse(path):.1f} MiB/s")
    return g / t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=1024)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(dir=args.dir))
    real, synthetic = folder / "real.log", folder / "synthetic.log"
    try:
        make_real(real, args.mb)
        ratio = row("real log (a LLaMA-Factory run's training section repeated)", real)
        os.unlink(real)
        make_synthetic(synthetic, args.mb)
        row("synthetic log (frames and dicts)", synthetic)
        print(f"goal: real-log ratio >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'} ({ratio:.2f})")
    finally:
        for p in (real, synthetic):
            if p.exists():
                os.unlink(p)
        folder.rmdir()


if __name__ == "__main__":
    main()
