"""Plain-text views of telemetry for the CLI (`lftop gpus`, `lftop doctor`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys

from lftop.gpu.nvml import GpuSnapshot
from lftop.gpu.sampler import Sample
from lftop.units import GIB


def na(value, fmt: str = "{}") -> str:
    return "N/A" if value is None else fmt.format(value)


def gpu_lines(s: Sample) -> list[str]:
    g = s.gpus
    lines = [f"driver {na(g.driver)}  CUDA {na(g.cuda)}  host CPU {s.host.cpu_percent:.0f}%  "
             f"RAM {s.host.ram_used / GIB:.1f}/{s.host.ram_total / GIB:.1f} GiB"]
    for d in g.devices:
        if d.lost:
            lines.append(f"[{d.index}] LOST: {d.error}")
            continue
        mem = (f"{d.mem_used / GIB:5.1f}/{d.mem_total / GIB:.1f} GiB" if d.mem_used is not None and d.mem_total else "N/A")
        power = f"{na(d.power_w, '{:.0f}')}/{na(d.power_limit_w, '{:.0f}')} W"
        lines.append(f"[{d.index}] {na(d.name):<24} mem {mem}  util {na(d.util_gpu, '{:>3}%')}  "
                     f"temp {na(d.temperature, '{}C')}  fan {na(d.fan, '{}%')}  power {power}")
        for p in d.processes:
            o = s.owners.get(p.pid)
            who = f"run {o.run}" if o and o.run else (o.user if o and o.user else "?")
            used = na(p.used_bytes / GIB if p.used_bytes is not None else None, "{:.1f} GiB")
            lines.append(f"      pid {p.pid:<8} {used:>9}  {who}  {o.command if o else ''}")
    return lines


def _torch_view(python: str) -> str:
    code = ("import torch;print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count(), "
            "torch.version.cuda)")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run {python}: {exc}"
    if out.returncode != 0:
        return "not importable in " + python
    version, available, count, cuda = out.stdout.split()
    return f"{version}, CUDA build {cuda}, sees {count} GPU(s)" + ("" if available == "True" else " (CUDA not available)")


def doctor(g: GpuSnapshot, disk_free: dict[str, int], python: str | None = None) -> tuple[list[str], int]:
    """The environment check before a fine-tune: (lines, number of problems)."""
    lines, problems = [], 0

    def check(ok: bool, text: str, fix: str = "") -> None:
        nonlocal problems
        lines.append(f"{'ok  ' if ok else 'FAIL'} {text}" + (f"\n     fix: {fix}" if not ok and fix else ""))
        problems += 0 if ok else 1

    check(g.error is None, f"NVML: {g.error or 'driver ' + str(g.driver) + ', CUDA ' + str(g.cuda)}",
          "install or reload the NVIDIA driver; on a machine without a GPU, train on the CPU (use_cpu = true)")
    for d in g.devices:
        if d.lost:
            check(False, f"GPU {d.index}: {d.error}", "reset the GPU (nvidia-smi -r) or reboot")
        else:
            free = d.mem_free / GIB if d.mem_free is not None else None
            check(True, f"GPU {d.index}: {d.name}, {na(free, '{:.1f}')} GiB free of {na(d.mem_total and d.mem_total / GIB, '{:.1f}')} GiB")
    python = python or sys.executable
    if importlib.util.find_spec("torch") or python != sys.executable:
        lines.append(f"info torch: {_torch_view(python)}")
    try:
        version = importlib.metadata.version("llamafactory")
        check(version == "0.9.5", f"llamafactory {version}", "lftop is tested with llamafactory 0.9.5: pip install 'lftop[train]'")
    except importlib.metadata.PackageNotFoundError:
        check(False, "llamafactory is not installed here", "pip install 'lftop[train]' (or set [launch] python to its env)")
    for path, free in disk_free.items():
        check(free > 10 * GIB, f"disk at {path}: {free / GIB:.1f} GiB free", "free space: checkpoints need room")
    return lines, problems
