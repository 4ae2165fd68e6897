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
from lftop.logs.follower import BLOCK, Follower, clean
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
    while (block := follower.read_block(BLOCK)).count:  # as lftop scan and the app read a log
        count += len(parser.feed_block(block.first, block.data))
    count += len(parser.finish())
    return time.perf_counter() - started, count


def python_parse(path: Path, limit: int = 64 << 20) -> float:
    """MiB/s of the Python parser alone (as without a C compiler at install) over the log's first `limit` bytes."""
    data = path.open("rb").read(limit)
    data = data[:data.rfind(b"\n")]
    started = time.perf_counter()
    LogParser().feed_block(1, clean(data))  # text goes to the Python parser
    return len(data) / (1 << 20) / (time.perf_counter() - started)


def grep(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["grep", "-c", "loss", str(path)], capture_output=True, check=False)
    return time.perf_counter() - started


def last_point(path: Path, repeat: int = 200) -> float:
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
    with open(big, "rb") as f:  # the small log is the big one's last two lines (about 1 KiB): only the size differs
        f.seek(-4096, 2)
        small.write_bytes(b"\n".join(f.read().split(b"\n")[-3:]))
    size_mb = big.stat().st_size / (1 << 20)
    grep(big)  # warm the page cache for both
    g = min(grep(big) for _ in range(3))
    t, records = min(lftop_parse(big) for _ in range(3))  # best of three, as for grep
    print(f"file: {size_mb:.0f} MiB, {records} records")
    print(f"grep -c loss : {size_mb / g:8.1f} MiB/s")
    print(f"lftop parse  : {size_mb / t:8.1f} MiB/s   ratio to grep {g / t:.2f} (goal >= 0.5)")
    print(f"  without the C scanner: {python_parse(big):.1f} MiB/s")
    tb, ts = last_point(big), last_point(small)
    print(f"last point   : {size_mb:.0f} MiB log {tb * 1e3:.3f} ms, {small.stat().st_size} B log {ts * 1e3:.3f} ms, "
          f"ratio {tb / ts:.2f} (goal <= 1.2)")
    for p in (big, small):
        os.unlink(p)
    folder.rmdir()


if __name__ == "__main__":
    main()
