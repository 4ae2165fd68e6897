"""A launch planned once: which GPUs the run gets and how many ranks it starts, then the estimate on exactly
those GPUs. The launch uses the same placement, so the estimate approves the GPUs the run really gets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lftop.estimate.advice import Report, advise
from lftop.estimate.arch import EstimateError
from lftop.gpu import nvml
from lftop.profiles import Profile
from lftop.runs.engines.local import training_command
from lftop.runs.rundir import RunDir
from lftop.units import GIB


@dataclass(frozen=True)
class Placement:
    cuda_visible_devices: str | None  # None: inherit (all GPUs); "": the CPU
    nproc: int


@dataclass(frozen=True)
class Plan:
    profile: Profile
    placement: Placement | None  # None for a what-if plan (--gpus N --gpu-mem G)
    report: Report | None
    note: str | None = None  # why the estimate does not apply, or where the capacity came from
    problem: str | None = None  # why the estimate could not be made (an unknown model)

    @property
    def verdict(self) -> str | None:
        return self.report.verdict if self.report else None


def place(profile: Profile, snapshot: nvml.GpuSnapshot | None = None, gpus: str | None = None) -> Placement:
    """Which GPUs a run gets and how many ranks it starts; `gpus` (CUDA_VISIBLE_DEVICES) overrides `[launch] gpus`.

    A string is CUDA_VISIBLE_DEVICES as written ("0", "1,3", "" for the CPU); an int picks that many GPUs."""
    spec = gpus if gpus is not None else profile.launch.gpus
    if spec is None or spec == "all":
        snapshot = snapshot or nvml.shared().read()
        visible, count = None, len([d for d in snapshot.devices if not d.lost])
    elif isinstance(spec, int):  # a count: the least-used GPUs now
        visible = ",".join(str(i) for i in nvml.least_used(int(spec), snapshot))
        count = int(spec)
    else:
        visible = spec
        count = len([d for d in spec.split(",") if d.strip()])
    return Placement(visible, profile.launch.nproc or max(count, 1))


def _on_cpu(profile: Profile, gpus: str | None) -> bool:
    return bool(profile.train.get("use_cpu")) or (gpus if gpus is not None else profile.launch.gpus) == ""


def plan(profile: Profile, gpus: str | None = None, what_if_gpus: int | None = None,
         what_if_gib: float | None = None, snapshot: nvml.GpuSnapshot | None = None, home: Path | None = None,
         calibrate: bool = True) -> Plan:
    """The placement and the estimate for `profile` now; or, with `what_if_*`, for GPUs described by hand.

    With `calibrate`, finished runs of a similar setup in `home` correct the estimate (and say so)."""
    args = profile.args()
    learn = Learn(calibrate, home, None)
    if what_if_gpus is not None or what_if_gib is not None:
        count = what_if_gpus or profile.launch.nproc or profile.gpu_count() or 1
        return _estimated(profile, None, args, count, what_if_gib, f"planned for {count} GPU(s)", learn)
    if _on_cpu(profile, gpus):
        return Plan(profile, place(profile, snapshot, gpus), None, "this run trains on the CPU: the GPU memory estimate does not apply")
    snapshot = snapshot or nvml.shared().read()
    if snapshot.error:
        note = f"GPUs cannot be read ({snapshot.error}): the estimate does not apply"
        try:
            return Plan(profile, place(profile, snapshot, gpus), None, note)
        except nvml.NvmlUnavailable as exc:  # a count of least-used GPUs cannot be picked
            return Plan(profile, None, None, note, problem=str(exc))
    placement = place(profile, snapshot, gpus)
    devices = nvml.visible(snapshot, placement.cuda_visible_devices)
    free = [d.mem_free for d in devices if d.mem_free is not None]
    if not free:
        return Plan(profile, placement, None, "no readable GPU memory: the estimate does not apply")
    capacity = min(free) / GIB
    where = ", ".join(str(d.index) for d in devices)
    note = f"GPU(s) {where}: {capacity:.1f} GiB free on the fullest"
    learn = Learn(calibrate, home, devices[0].name if devices else None)
    return _estimated(profile, placement, args, placement.nproc, capacity, note, learn)


@dataclass(frozen=True)
class Learn:
    """Whether and from where measured peaks correct the estimate, and for which GPU model."""

    calibrate: bool
    home: Path | None
    gpu: str | None


def _estimated(profile: Profile, placement: Placement | None, args: dict, count: int, capacity: float | None,
               note: str, learn: Learn) -> Plan:
    try:
        report = advise(args, count, capacity, profile.path.parent, calibrate=learn.calibrate, home=learn.home,
                        gpu=learn.gpu)
    except EstimateError as exc:
        return Plan(profile, placement, None, note, problem=str(exc))
    return Plan(profile, placement, report, note)


def place_run(run: RunDir, plan: Plan) -> None:
    """Record in run.json where the run starts: its command, GPUs, ranks and predicted peak."""
    profile, placement = plan.profile, plan.placement
    distributed = bool(profile.train.get("deepspeed"))  # DeepSpeed needs a distributed launch even alone
    env = {"PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "LFTOP_RUN_ID": run.id, **profile.launch.env}
    if placement.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = placement.cuda_visible_devices
    meta = run.meta()
    meta.update(command=training_command(profile.launch.python, run.path, placement.nproc, distributed), env=env,
                nproc=placement.nproc, gpus=placement.cuda_visible_devices,
                predicted_gib=round(plan.report.per_gpu_gib, 2) if plan.report else None)
    run.write_meta(meta)
