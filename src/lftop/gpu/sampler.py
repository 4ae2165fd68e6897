"""Sample GPUs and the host off the UI thread at a fixed interval; one poll at a time, never two."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lftop.gpu import host
from lftop.gpu.nvml import GpuSnapshot, Nvml, shared
from lftop.gpu.owners import Owner, owner, run_roots
from lftop.gpu.ring import Rings
from lftop.runs.process import ProcessRef

MIN_INTERVAL = 0.25


@dataclass(frozen=True)
class Sample:
    gpus: GpuSnapshot
    host: host.HostSnapshot
    owners: dict[int, Owner]  # GPU process pid -> owner
    nodes: dict[str, dict] = field(default_factory=dict)  # a Slurm run's node -> its `lftop gpus --json` sample


def sample(nvml: Nvml | None = None, runs: list[tuple[str, ProcessRef]] = (), disks: list[Path] = ()) -> Sample:
    gpus = (nvml or shared()).read()
    roots = run_roots(list(runs)) if runs else {}
    owners = {p.pid: owner(p.pid, roots) for d in gpus.devices for p in d.processes}
    return Sample(gpus, host.read(list(disks)), owners)


def record(rings: Rings, s: Sample) -> None:
    """Append one sample's numbers to the history rings (what the GPU panel's sparklines draw)."""
    for d in s.gpus.devices:
        rings.add(f"gpu{d.index}.util", d.util_gpu)


class Sampler(threading.Thread):
    """Calls `take()` every `interval` seconds and hands each result to `deliver`, in one thread.

    A slow poll delays the next instead of overlapping it. `wake()` asks for a poll now (a file changed):
    `quick()`, when given, for a change that needs only part of a poll, else `take()`. A lone change is
    polled at once; while changes keep coming (BURST woken polls within WINDOW seconds), woken polls are
    SUSTAINED_GAP apart, so a run that writes a thousand lines a second costs what two polls a second do."""

    QUICK_GAP, SUSTAINED_GAP, BURST, WINDOW = 0.02, 0.5, 4, 2.0

    def __init__(self, take: Callable[[], object], deliver: Callable[[object], None], interval: float = 1.0,
                 quick: Callable[[], object] | None = None):
        super().__init__(name="lftop-sampler", daemon=True)
        self.take, self.deliver, self.quick = take, deliver, quick
        self.interval = max(MIN_INTERVAL, interval)
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._full = False
        self._woken: deque[float] = deque(maxlen=self.BURST)

    def wake(self, full: bool = True) -> None:
        self._full = self._full or full or self.quick is None
        self._wake.set()

    def run(self) -> None:
        due = 0.0
        while not self._halt.is_set():
            started = time.monotonic()
            full, self._full = started >= due or self._full, False
            try:
                self.deliver((self.take if full else self.quick)())
            except Exception as exc:  # a failed poll must not end the sampling
                self.deliver(exc)
            if full:
                due = started + self.interval
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            now = time.monotonic()
            if now < due:  # woken by a change
                busy = len(self._woken) == self.BURST and now - self._woken[0] < self.WINDOW
                self._woken.append(now)
                self._halt.wait(max(0.0, started + (self.SUSTAINED_GAP if busy else self.QUICK_GAP) - now))

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
