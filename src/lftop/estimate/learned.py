"""Learning from finished runs: each run's measured peak beside what the model predicted, kept in the home.

The worker appends each rank's torch.cuda.max_memory_allocated / max_memory_reserved to RUN_DIR/memory.jsonl.
After a run, `ingest` keeps one record per run in HOME/calibration-<uid>.jsonl: the setup's key (model family,
finetuning method, stage, quantization), the GPU model, the library versions, the raw prediction with its
terms, and the measured peak as nvidia-smi would see it (reserved plus the CUDA context). The next estimate
of a similar setup on this machine is scaled by the median measured/predicted ratio of up to the last
KEEP such runs, and says so. Files that cannot be read, or that another user owns, are skipped.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lftop.estimate.arch import Arch
from lftop.estimate.memory import CUDA_CONTEXT, Estimate, Setup
from lftop.units import GIB


def _history(home: Path) -> Path:
    """This user's calibration records in the home (one file per user: in a shared home another user's is
    neither readable nor trusted)."""
    return Path(home) / f"calibration-{os.getuid()}.jsonl"
MEMORY_FILE = "memory.jsonl"  # written by lftop.worker
KEEP = 10  # the most recent similar runs a correction uses
MAX_LINE = 1 << 16
NEAR_CAPACITY = 0.95


@dataclass(frozen=True)
class Peak:
    """The largest peak over a run's ranks and logging steps."""

    allocated_gib: float
    reserved_gib: float
    gpu: str
    ranks: int
    versions: dict
    oom: bool = False
    total_gib: float | None = None  # the GPU's memory, as torch reports it

    @property
    def near_capacity(self) -> bool:
        """Reserved memory past NEAR_CAPACITY of the GPU: the longest batches may still be ahead."""
        return bool(self.total_gib) and self.reserved_gib >= NEAR_CAPACITY * self.total_gib

    @property
    def smi_gib(self) -> float:
        """What nvidia-smi shows for the process at its peak: reserved memory plus the CUDA context."""
        return self.reserved_gib + CUDA_CONTEXT / GIB


@dataclass(frozen=True)
class Calibration:
    runs: int
    factor: float
    gpu: str

    def describe(self) -> str:
        plural = "run" if self.runs == 1 else "runs"
        return f"calibrated from {self.runs} {plural} on this machine ({self.gpu}): {self.factor - 1:+.0%}"


def key(arch: Arch, s: Setup) -> dict:
    """What makes two setups similar enough to share a correction."""
    return {"family": arch.family or arch.name, "finetuning": s.finetuning, "stage": s.stage,
            "quant": s.quant_bits or 0, "zero": s.zero}


def _own(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _lines(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file; unreadable or malformed lines are skipped."""
    try:
        with path.open("rb") as f:
            raw = f.read(1 << 24)
    except OSError:
        return []
    out = []
    for line in raw.splitlines():
        if len(line) > MAX_LINE:
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _gib(value: object) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1 << 50
    return value / GIB if ok else None


def measured_peak(run_dir: Path) -> Peak | None:
    """The run's peak from RUN_DIR/memory.jsonl, or None when nothing (valid) was recorded."""
    allocated = reserved = 0.0
    gpu, ranks, found, oom, total = "", set(), {}, False, None
    for line in _lines(Path(run_dir) / MEMORY_FILE):
        a, r = _gib(line.get("allocated")), _gib(line.get("reserved"))
        if a is None or r is None:
            continue
        allocated, reserved = max(allocated, a), max(reserved, r)
        gpu = str(line.get("gpu") or gpu)[:100]
        ranks.add(line.get("rank") if isinstance(line.get("rank"), int) else 0)
        oom = oom or line.get("oom") is True
        total = _gib(line.get("total")) or total
        if isinstance(line.get("versions"), dict):
            found = {str(k)[:40]: str(v)[:40] for k, v in line["versions"].items()}
    if not reserved:
        return None
    return Peak(allocated, reserved, gpu, len(ranks), found, oom, total)


def record(home: Path, run_id: str, arch: Arch, s: Setup, predicted: Estimate, peak: Peak) -> dict:
    """Append one finished run's prediction and measurement to HOME/calibration-<uid>.jsonl."""
    entry = {"run": run_id, "time": time.time(), "key": key(arch, s), "gpu": peak.gpu, "versions": peak.versions,
             "predicted_gib": round(predicted.per_gpu_gib, 4),
             "terms": {k: round(v, 4) for k, v in predicted.breakdown.items()},
             "measured_gib": round(peak.smi_gib, 4), "allocated_gib": round(peak.allocated_gib, 4)}
    fd = os.open(_history(home), os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)
    return entry


def history(home: Path) -> list[dict]:
    path = _history(home)
    return _lines(path) if _own(path) else []


def calibration(home: Path, arch: Arch, s: Setup, gpu: str | None = None) -> Calibration | None:
    """The median measured/predicted ratio of the last similar runs here (same GPU model when given)."""
    wanted = key(arch, s)
    ratios, gpus = [], set()
    for entry in history(home):
        measured, predicted = entry.get("measured_gib"), entry.get("predicted_gib")
        if entry.get("key") != wanted or (gpu and entry.get("gpu") != gpu):
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 << 20
                   for v in (measured, predicted)):
            continue
        ratios.append(measured / predicted)
        gpus.add(str(entry.get("gpu")))
    ratios = ratios[-KEEP:]
    if not ratios:
        return None
    factor = min(4.0, max(0.25, statistics.median(ratios)))  # a bounded correction: a bad record cannot zero it
    return Calibration(len(ratios), factor, gpu or ", ".join(sorted(gpus)))


def apply(result: Estimate, cal: Calibration | None) -> Estimate:
    """The estimate scaled by the calibration, the correction shown as its own term."""
    if cal is None:
        return result
    breakdown = {**result.breakdown, "calibration": result.per_gpu_gib * (cal.factor - 1)}
    return replace(result, breakdown=breakdown, notes=(*result.notes, cal.describe()))


def ingest(home: Path) -> int:
    """Record every finished run under HOME/runs that is not yet in the history; returns how many were added."""
    from lftop.estimate import arch as arch_mod
    from lftop.estimate.memory import estimate, setup_from_args

    runs = Path(home) / "runs"
    try:
        candidates = [p for p in runs.iterdir() if (p / MEMORY_FILE).is_file()]
    except OSError:
        return 0
    done = {entry.get("run") for entry in history(home)}
    added = 0
    for run_dir in sorted(candidates):
        if run_dir.name in done or not _own(run_dir) or not _own(run_dir / MEMORY_FILE):
            continue
        lines = _lines(run_dir / MEMORY_FILE)
        if not any(line.get("final") is True and line.get("oom") is not True for line in lines):
            continue  # still running, or it ran out of memory: its peak is a floor, not a measurement
        meta = next(iter(_lines(run_dir / "run.json")), {})
        peak = measured_peak(run_dir)
        args = meta.get("args")
        if peak is None or not isinstance(args, dict):
            continue
        try:
            model = arch_mod.load(str(args.get("model_name_or_path", "")))
            setup = setup_from_args(args, peak.ranks, Path(str(meta.get("cwd") or ".")))
        except ValueError:  # EstimateError and UnknownModel: nothing to compare with
            continue
        try:
            record(home, run_dir.name, model, setup, estimate(model, setup), peak)
        except OSError:  # a home this user cannot write (another user's, read-only): estimate without learning
            break
        added += 1
    return added
