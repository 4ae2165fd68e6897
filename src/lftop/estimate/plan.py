"""The estimate for a profile on the GPUs it would get now, or on GPUs described by hand."""

from __future__ import annotations

from dataclasses import dataclass

from lftop.estimate.advice import Report, advise
from lftop.gpu import nvml
from lftop.profiles import Profile

GIB = 1 << 30


@dataclass(frozen=True)
class Plan:
    report: Report | None
    note: str | None = None  # why the estimate does not apply, or where the capacity came from


def plan(profile: Profile, gpus: int | None = None, gpu_mem_gib: float | None = None,
         cuda_visible_devices: str | None = None, snapshot: nvml.GpuSnapshot | None = None) -> Plan:
    """Estimate `profile` for `gpus` x `gpu_mem_gib`, else for the free memory of the GPUs it would use."""
    args = profile.args()
    if gpus is not None or gpu_mem_gib is not None:
        count = gpus or profile.launch.nproc or profile.gpu_count() or 1
        return Plan(advise(args, count, gpu_mem_gib, profile.path.parent), f"planned for {count} GPU(s)")
    if args.get("use_cpu") or profile.launch.gpus == "":
        return Plan(None, "this run trains on the CPU: the GPU memory estimate does not apply")
    snapshot = snapshot or nvml.shared().read()
    if snapshot.error:
        return Plan(None, f"GPUs cannot be read ({snapshot.error}): the estimate does not apply")
    if cuda_visible_devices is None and isinstance(profile.launch.gpus, str) and profile.launch.gpus != "all":
        cuda_visible_devices = profile.launch.gpus
    if isinstance(profile.launch.gpus, int) and cuda_visible_devices is None:
        cuda_visible_devices = ",".join(map(str, nvml.least_used(profile.launch.gpus, snapshot)))
    devices = nvml.visible(snapshot, cuda_visible_devices)
    free = [d.mem_free for d in devices if d.mem_free is not None]
    if not free:
        return Plan(None, "no readable GPU memory: the estimate does not apply")
    count = profile.launch.nproc or len(devices)
    capacity = min(free) / GIB
    where = ", ".join(str(d.index) for d in devices)
    return Plan(advise(args, count, capacity, profile.path.parent), f"GPU(s) {where}: {capacity:.1f} GiB free on the fullest")
