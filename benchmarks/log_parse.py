"""Parse rate of a large training.log beside `grep -c loss`, and time to the last point of a huge vs a tiny log.

    python benchmarks/log_parse.py [--mb 1024] [--dir /tmp]

The log is synthesised from the line shapes of a real LLaMA-Factory run with logging_steps = 10 (a tqdm
frame per step glued by carriage returns, a transformers 5.x metric dict every ten steps, INFO lines),
then both tools read the same file.
Goals: parse rate at least half of grep's; last point of a 1 GiB log within 20% of a 1 KiB log's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lftop.logs import scan
from lftop.logs.follower import Follower
from lftop.logs.parse import LogParser

BLOCK_STEPS = 1000


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


def make(path: Path, megabytes: float) -> None:
    total = 10_000_000
    with open(path, "wb") as out:
        out.write(b"[INFO|trainer.py:1478] 2026-11-22 07:52:57,024 >>   Total optimization steps = 10,000,000\n")
        step = 1
        while out.tell() < megabytes * (1 << 20):
            out.write(block(step, total))
            step += BLOCK_STEPS


def lftop_parse(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    follower, parser, count = Follower(path), LogParser(), 0
    while (block := follower.read_block(limit=64 << 20)).count:
        count += len(parser.feed_block(block.first, block.data))
    count += len(parser.finish())
    return time.perf_counter() - started, count


def grep(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["grep", "-c", "loss", str(path)], capture_output=True, check=False)
    return time.perf_counter() - started


def last_point(path: Path, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        latest = scan.tail(path)
        times.append(time.perf_counter() - started)
        assert latest.point is not None
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=1024)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(dir=args.dir))
    big, small = folder / "big.log", folder / "small.log"
    make(big, args.mb)
    small.write_bytes(block(1, 10_000_000)[:1024].rsplit(b"\n", 1)[0] + b"\n")
    size_mb = big.stat().st_size / (1 << 20)
    grep(big)  # warm the page cache for both
    g = min(grep(big) for _ in range(3))
    t, records = lftop_parse(big)
    print(f"file: {size_mb:.0f} MiB, {records} records")
    print(f"grep -c loss : {size_mb / g:8.1f} MiB/s")
    print(f"lftop parse  : {size_mb / t:8.1f} MiB/s   ratio to grep {g / t:.2f} (goal >= 0.5)")
    tb, ts = last_point(big), last_point(small)
    print(f"last point   : 1 GiB log {tb * 1e3:.2f} ms, 1 KiB log {ts * 1e3:.2f} ms, ratio {tb / ts:.2f} (goal <= 1.2)")
    for p in (big, small):
        os.unlink(p)
    folder.rmdir()


if __name__ == "__main__":
    main()
