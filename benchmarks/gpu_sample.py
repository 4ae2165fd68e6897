"""Cost of one telemetry sample (8 simulated GPUs plus the host) and the sampler's CPU share at 1 Hz.

    python benchmarks/gpu_sample.py [--seconds 20]

The baseline, measured in the same run, is a bare psutil host reading (what any monitor pays).
Goal: one sample under 5 ms.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from lftop.gpu import host
from lftop.gpu.nvml import Nvml
from lftop.gpu.ring import Rings
from lftop.gpu.sampler import Sampler, record, sample
from lftop.gpu.simulated import SimulatedNvml


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, repeat: int = 300) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    nvml = Nvml(SimulatedNvml(count=8))
    rings = Rings()
    one = timed(lambda: record(rings, sample(nvml)))
    bare = timed(lambda: host.read())
    print(f"one sample, 8 simulated GPUs + host: {one * 1e6:8.0f} us (goal < 5000 us)")
    print(f"bare psutil host reading (baseline) : {bare * 1e6:8.0f} us   ratio {one / bare:.1f}x")

    delivered = []
    sampler = Sampler(lambda: record(rings, sample(nvml)), delivered.append, interval=1.0)
    before, started = cpu(), time.monotonic()
    sampler.start()
    time.sleep(args.seconds)
    sampler.stop()
    sampler.join()
    share = (cpu() - before) / (time.monotonic() - started)
    print(f"sampler at 1 Hz for {args.seconds:.0f} s: {len(delivered)} samples, CPU share {share:.3%} of one core")


if __name__ == "__main__":
    main()
