"""Naming a stall: a stalled run whose GPUs are busy at idle power is most likely stuck in a collective."""

from __future__ import annotations

from lftop.gpu import nvml
from lftop.runs.status import RunStatus

BUSY, IDLE_POWER = 80, 0.35  # utilisation percent, and share of the power limit


def hint(run: RunStatus, snapshot: nvml.GpuSnapshot) -> str | None:
    """"likely a collective (NCCL) hang" when a stalled run's GPUs all read busy while drawing idle power
    (a rank spinning in a stuck all-reduce keeps utilisation up and does no arithmetic); None otherwise."""
    if not run.stalled or snapshot.error or run.gpus in (None, ""):
        return None
    devices = nvml.visible(snapshot, run.gpus)
    readings = [(d.util_gpu, d.power_w, d.power_limit_w) for d in devices]
    if not readings or any(u is None or p is None or not limit for u, p, limit in readings):
        return None
    if all(u >= BUSY and p <= IDLE_POWER * limit for u, p, limit in readings):
        gpus = ",".join(str(d.index) for d in devices)
        return f"likely a collective (NCCL) hang: GPU(s) {gpus} busy at idle power with no step"
    return None
