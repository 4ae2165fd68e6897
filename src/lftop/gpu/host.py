"""Host telemetry through psutil: CPU, RAM, swap, load, and free disk where the runs write."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


@dataclass(frozen=True)
class HostSnapshot:
    time: float
    cpu_percent: float
    cpu_count: int
    ram_used: int
    ram_total: int
    swap_used: int
    swap_total: int
    load: tuple[float, float, float]
    disk_free: dict[str, int] = field(default_factory=dict)  # path -> free bytes

    def to_dict(self) -> dict:
        return asdict(self)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def read(paths: list[Path] | None = None) -> HostSnapshot:
    """One host sample; `paths` are output_dirs whose disk space matters (a checkpoint needs room)."""
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    disks: dict[str, int] = {}
    for path in paths or ():
        try:
            disks[str(path)] = psutil.disk_usage(str(_existing(Path(path)))).free
        except OSError:
            continue
    return HostSnapshot(
        time=time.time(),
        cpu_percent=psutil.cpu_percent(interval=None),
        cpu_count=psutil.cpu_count() or 1,
        ram_used=memory.total - memory.available,
        ram_total=memory.total,
        swap_used=swap.used,
        swap_total=swap.total,
        load=os.getloadavg(),
        disk_free=disks,
    )
