"""Read NVIDIA GPUs through NVML (nvidia-ml-py's `pynvml`), lazily, with N/A instead of exceptions.

A field the card does not support reads as None (shown as N/A). A GPU that falls off the bus is
marked lost while the others keep reading. A missing or mismatched driver becomes an
`NvmlUnavailable` whose message says what happened and what to do. The module behind it is the real
`pynvml`, or the simulated one (`lftop.gpu.simulated`) when LFTOP_SIMULATE is set.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass


class NvmlUnavailable(Exception):
    """NVML cannot be used at all; the message is meant for the user."""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class Device:
    index: int
    name: str | None = None
    uuid: str | None = None
    mem_used: int | None = None
    mem_total: int | None = None
    mem_free: int | None = None
    util_gpu: int | None = None
    util_mem: int | None = None
    temperature: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    fan: int | None = None
    clock_sm: int | None = None
    clock_mem: int | None = None
    pstate: int | None = None
    processes: tuple[GpuProcess, ...] = ()
    lost: bool = False
    error: str | None = None


@dataclass(frozen=True)
class GpuSnapshot:
    time: float
    devices: tuple[Device, ...] = ()
    driver: str | None = None
    cuda: str | None = None
    error: str | None = None  # NVML unavailable: why, for the user

    def to_dict(self) -> dict:
        return asdict(self)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _explain(nv, exc: Exception) -> str:
    if isinstance(exc, nv.NVMLError_LibraryNotFound):
        return ("no NVIDIA driver found (libnvidia-ml.so is not installed): install the NVIDIA driver, "
                "or try lftop without a GPU: lftop --simulate 2")
    if isinstance(exc, nv.NVMLError_DriverNotLoaded):
        return "the NVIDIA driver is installed but not loaded: check `dmesg | grep -i nvidia`, load it with `sudo modprobe nvidia`, or reboot"
    if isinstance(exc, nv.NVMLError_LibRmVersionMismatch):
        return ("NVIDIA driver/library version mismatch (the driver was upgraded but the old kernel module is "
                "still loaded): reboot, or reload the nvidia kernel modules")
    if isinstance(exc, nv.NVMLError_NoPermission):
        return "no permission to read the GPUs through NVML: check the permissions of /dev/nvidia*"
    return f"NVML error: {exc}"


def _module():
    if os.environ.get("LFTOP_SIMULATE"):
        from lftop.gpu import simulated

        return simulated.from_env()
    import pynvml

    return pynvml


class Nvml:
    """Lazy NVML session over `module` (pynvml or a simulated stand-in); thread-safe."""

    def __init__(self, module=None):
        self._nv = module
        self._lock = threading.Lock()
        self._ready = False
        self._error: str | None = None

    @property
    def nv(self):
        if self._nv is None:
            self._nv = _module()
        return self._nv

    def _init(self) -> None:
        with self._lock:
            if self._ready:
                return
            try:
                self.nv.nvmlInit()
            except self.nv.NVMLError as exc:
                raise NvmlUnavailable(_explain(self.nv, exc)) from None
            except OSError as exc:  # a library that exists but does not load
                raise NvmlUnavailable(f"NVML could not be loaded: {exc}") from None
            self._ready = True

    def _query(self, fn, *args):
        try:
            return fn(*args)
        except self.nv.NVMLError_GpuIsLost:
            raise
        except self.nv.NVMLError:
            return None

    def _device(self, index: int) -> Device:
        nv = self.nv
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            q = self._query
            memory = q(nv.nvmlDeviceGetMemoryInfo, handle)
            util = q(nv.nvmlDeviceGetUtilizationRates, handle)
            power = q(nv.nvmlDeviceGetPowerUsage, handle)
            limit = q(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
            processes = q(nv.nvmlDeviceGetComputeRunningProcesses, handle) or []
            name, uuid = q(nv.nvmlDeviceGetName, handle), q(nv.nvmlDeviceGetUUID, handle)
            return Device(
                index=index,
                name=_text(name) if name is not None else None,
                uuid=_text(uuid) if uuid is not None else None,
                mem_used=memory.used if memory else None,
                mem_total=memory.total if memory else None,
                mem_free=memory.free if memory else None,
                util_gpu=util.gpu if util else None,
                util_mem=util.memory if util else None,
                temperature=q(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
                power_w=power / 1000 if power is not None else None,
                power_limit_w=limit / 1000 if limit is not None else None,
                fan=q(nv.nvmlDeviceGetFanSpeed, handle),
                clock_sm=q(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
                clock_mem=q(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM),
                pstate=q(nv.nvmlDeviceGetPerformanceState, handle),
                processes=tuple(
                    GpuProcess(p.pid, p.usedGpuMemory if isinstance(p.usedGpuMemory, int) else None) for p in processes
                ),
            )
        except nv.NVMLError_GpuIsLost:
            return Device(index=index, lost=True, error="GPU is lost (fell off the bus): check `dmesg`, a reset or reboot is needed")
        except nv.NVMLError as exc:
            return Device(index=index, lost=True, error=f"cannot read this GPU: {exc}")

    def read(self) -> GpuSnapshot:
        """One snapshot of every GPU; never raises: an unusable NVML is reported in `error`."""
        now = time.time()
        try:
            self._init()
            count = self.nv.nvmlDeviceGetCount()
        except NvmlUnavailable as exc:
            return GpuSnapshot(now, error=str(exc))
        except self.nv.NVMLError as exc:
            return GpuSnapshot(now, error=_explain(self.nv, exc))
        driver = self._query(self.nv.nvmlSystemGetDriverVersion)
        cuda = self._query(self.nv.nvmlSystemGetCudaDriverVersion)
        cuda_text = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        return GpuSnapshot(
            now,
            devices=tuple(self._device(i) for i in range(count)),
            driver=_text(driver) if driver is not None else None,
            cuda=cuda_text,
        )


_shared: dict[str | None, Nvml] = {}


def shared() -> Nvml:
    """The process-wide NVML session; one per LFTOP_SIMULATE value (`--simulate` and the tests set it)."""
    key = os.environ.get("LFTOP_SIMULATE") or None
    if key not in _shared:
        _shared[key] = Nvml()
    return _shared[key]


def device_count() -> int:
    return len(shared().read().devices)


def visible(snapshot: GpuSnapshot, cuda_visible_devices: str | None) -> list[Device]:
    """The devices a process sees under CUDA_VISIBLE_DEVICES, in CUDA's numbering.

    NVML numbers GPUs in PCI bus order; so does CUDA under CUDA_DEVICE_ORDER=PCI_BUS_ID, which lftop
    sets for every run it launches (CUDA's default puts the fastest card first). UUIDs always match.
    """
    devices = [d for d in snapshot.devices if not d.lost]
    if cuda_visible_devices is None:
        return devices
    by_index = {d.index: d for d in devices}
    chosen = []
    for token in (t.strip() for t in cuda_visible_devices.split(",")):
        match = by_index.get(int(token)) if token.isdigit() else next(
            (d for d in devices if token and d.uuid and d.uuid.startswith(token)), None
        )
        if match is None:
            break  # CUDA ignores everything from the first invalid entry on
        chosen.append(match)
    return chosen


def least_used(count: int, snapshot: GpuSnapshot | None = None) -> list[int]:
    """Indices of the `count` GPUs with the most free memory, then the lowest utilisation."""
    snapshot = snapshot or shared().read()
    if snapshot.error:
        raise NvmlUnavailable(f"cannot pick {count} GPUs: {snapshot.error}")
    devices = [d for d in snapshot.devices if not d.lost]
    if len(devices) < count:
        raise NvmlUnavailable(f"the profile asks for {count} GPUs, this machine has {len(devices)} readable")
    ranked = sorted(devices, key=lambda d: (-(d.mem_free or 0), d.util_gpu or 0, d.index))
    return sorted(d.index for d in ranked[:count])
