"""A simulated `pynvml`: the NVML boundary for the demo and the tests, on machines without a GPU.

It answers the pynvml calls lftop makes, with pynvml's own exception classes. Its devices idle until
a run lftop started is alive on them: then memory fills (to the run's predicted peak, when run.json has one)
and utilisation rises, and both fall back when the run pauses or ends. Failures on demand: fields that read as not supported, a lost GPU.

LFTOP_SIMULATE="COUNT[,model=NAME][,mem=GIB][,na=fan+power][,lost=INDEX][,hang=INDEX]" (e.g. "8,model=H100,mem=80");
`hang` makes a busy GPU draw idle power, as a rank spinning in a stuck NCCL collective does.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pynvml

from lftop.units import GIB

NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
NVMLError = pynvml.NVMLError
NVMLError_NotSupported = pynvml.NVMLError_NotSupported
NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
NVMLError_LibRmVersionMismatch = pynvml.NVMLError_LibRmVersionMismatch
NVMLError_NoPermission = pynvml.NVMLError_NoPermission
NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
NA_FIELDS = ("fan", "power", "temperature", "clocks", "pstate", "utilization", "processes")


@dataclass
class Load:
    """What runs put on one simulated GPU."""

    pids: list[int] = field(default_factory=list)
    since: float = 0.0
    held: dict[int, int] = field(default_factory=dict)  # pid -> bytes, for runs whose run.json predicts a peak


class SimulatedNvml:
    """A pynvml stand-in with `count` GPUs of `memory_gib` each."""

    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM = NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM
    NVMLError, NVMLError_NotSupported, NVMLError_GpuIsLost = NVMLError, NVMLError_NotSupported, NVMLError_GpuIsLost
    NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded = NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded
    NVMLError_LibRmVersionMismatch, NVMLError_NoPermission = NVMLError_LibRmVersionMismatch, NVMLError_NoPermission

    def __init__(self, count: int = 2, model: str = "NVIDIA GeForce RTX 4090", memory_gib: float = 24.0,
                 na: set[str] | None = None, lost: set[int] | None = None, home: Path | None = None,
                 hang: set[int] | None = None,
                 init_error: type[Exception] | None = None):
        self.count, self.model, self.total = count, model, int(memory_gib * GIB)
        self.hang = set(hang or ())
        self.na = set(na or ())
        self.lost = set(lost or ())
        self.home = home
        self.init_error = init_error
        self.external: dict[int, list[int]] = {}  # index -> pids placed by hand (tests)
        self._loads: dict[int, Load] = {}
        self._loads_at = 0.0
        self._loads_home: Path | None = None
        self._lock = threading.Lock()
        self._rng = random.Random(7)

    # -- what drives the devices ------------------------------------------------------------
    def _runs_home(self) -> Path | None:
        if self.home is not None:
            return self.home
        from lftop import paths

        return paths.home()

    def _refresh_loads(self) -> None:
        """Which live runs sit on which GPU (re-read at most four times a second: one read of a device asks for
        many fields)."""
        now, home = time.monotonic(), self._runs_home()
        if now - self._loads_at < 0.25 and home == self._loads_home:
            return
        self._loads_at, self._loads_home = now, home
        from lftop.runs.rundir import all_runs

        loads: dict[int, Load] = {}
        for run in all_runs(home) if home else []:
            meta, ref = run.meta(), run.process_ref()
            if ref is None or not meta.get("gpus"):
                continue
            proc = ref.process()
            if proc is None:
                continue
            try:
                workers = [c.pid for c in proc.children(recursive=True)] or [proc.pid]
            except Exception:
                continue
            predicted = meta.get("predicted_gib")
            for i, token in enumerate(t for t in str(meta["gpus"]).split(",") if t.strip().isdigit()):
                load = loads.setdefault(int(token), Load(since=proc.create_time()))
                pid = workers[min(i, len(workers) - 1)]
                load.pids.append(pid)
                if isinstance(predicted, (int, float)) and predicted > 0:
                    load.held[pid] = int(predicted * GIB)  # a run holds its predicted peak from its start
        self._loads = loads

    def _load(self, index: int) -> Load:
        with self._lock:
            self._refresh_loads()
            load = self._loads.get(index, Load())
        if index in self.external:
            load = Load(load.pids + self.external[index], load.since or time.time() - 60, load.held)
        return load

    def _busy(self, index: int) -> float:
        """0 when idle, rising to 1 over ten seconds after a run starts on the GPU."""
        load = self._load(index)
        if not load.pids:
            return 0.0
        return min(1.0, (time.time() - load.since) / 10 + 0.2)

    def _check(self, handle: int, field_name: str | None = None) -> None:
        if handle in self.lost:
            raise NVMLError_GpuIsLost()
        if field_name in self.na:
            raise NVMLError_NotSupported()

    # -- the pynvml surface ------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise NVMLError_InvalidArgument()
        self._check(index)
        return index

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetName(self, h: int) -> str:
        self._check(h)
        return self.model

    def nvmlDeviceGetUUID(self, h: int) -> str:
        self._check(h)
        return f"GPU-5f1a{h:04x}-0000-4000-8000-00000000{h:04x}"

    def nvmlDeviceGetMemoryInfo(self, h: int):
        self._check(h, "memory")
        per_process = self._process_bytes(h)
        used = int(0.4 * GIB) + sum(per_process.values())
        used = min(used, self.total)
        return SimpleNamespace(total=self.total, used=used, free=self.total - used)

    def _process_bytes(self, h: int) -> dict[int, int]:
        load = self._load(h)
        if not load.pids:
            return {}
        each = int(self.total * 0.7 * self._busy(h) / len(load.pids))
        return {pid: load.held.get(pid, each) for pid in load.pids}

    def nvmlDeviceGetUtilizationRates(self, h: int):
        self._check(h, "utilization")
        busy = self._busy(h)
        wobble = 4 * math.sin(time.time() / 3 + h)
        gpu = int(max(0, min(100, busy * 93 + wobble))) if busy else 0
        return SimpleNamespace(gpu=gpu, memory=int(gpu * 0.6))

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        self._check(h, "temperature")
        return int(34 + 44 * self._busy(h) + h)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self._check(h, "power")
        return int((30 + (0 if h in self.hang else 380) * self._busy(h)) * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        self._check(h, "power")
        return 450_000

    def nvmlDeviceGetFanSpeed(self, h: int) -> int:
        self._check(h, "fan")
        return int(30 + 50 * self._busy(h))

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        self._check(h, "clocks")
        return (2520 if self._busy(h) else 210) if kind == NVML_CLOCK_SM else 10501

    def nvmlDeviceGetPerformanceState(self, h: int) -> int:
        self._check(h, "pstate")
        return 2 if self._busy(h) else 8

    def nvmlDeviceGetComputeRunningProcesses(self, h: int):
        self._check(h, "processes")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._process_bytes(h).items()]


def parse_spec(spec: str) -> dict:
    """Keyword arguments for SimulatedNvml from an LFTOP_SIMULATE value; ValueError names what is wrong."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if parts and not parts[0].isdigit():
        raise ValueError(f"simulated GPUs: {parts[0]!r} is not a count (e.g. 2, or 8,model=H100,mem=80)")
    kwargs: dict = {"count": int(parts[0]) if parts else 2}
    if not 0 < kwargs["count"] <= 64:
        raise ValueError(f"simulated GPUs: the count must be 1 to 64, not {kwargs['count']}")
    for part in parts[1:]:
        key, _, value = part.partition("=")
        try:
            if key == "model":
                kwargs["model"] = value
            elif key == "mem":
                kwargs["memory_gib"] = float(value)
                if not 0 < kwargs["memory_gib"] < 1 << 20:
                    raise ValueError
            elif key == "na":
                kwargs["na"] = {v for v in value.split("+") if v}
            elif key in ("lost", "hang"):
                kwargs[key] = {int(v) for v in value.split("+") if v}
            else:
                raise ValueError(f"simulated GPUs: unknown option {key!r} (count, model=, mem=, na=, lost=, hang=)")
        except ValueError as exc:
            raise ValueError(str(exc) if str(exc).startswith("simulated") else
                             f"simulated GPUs: {part!r} is not a valid {key}= (e.g. mem=80, lost=1)") from None
    return kwargs


_from_env: dict[str, SimulatedNvml] = {}


def from_env() -> SimulatedNvml:
    spec = os.environ.get("LFTOP_SIMULATE", "2")
    if spec not in _from_env:
        _from_env[spec] = SimulatedNvml(**parse_spec(spec))
    return _from_env[spec]
