"""The OOM-fix policy: after a run ran out of GPU memory, the cheapest change predicted to fit its GPUs."""

from __future__ import annotations

from lftop.estimate.advice import TIGHT, Suggestion, advise
from lftop.estimate.arch import EstimateError
from lftop.gpu import nvml
from lftop.ops.actions import Refused
from lftop.runs.rundir import RunDir
from lftop.units import GIB


def oom_fix(run: RunDir, snapshot: nvml.GpuSnapshot | None = None) -> Suggestion:
    """The first suggestion predicted to fit the run's GPUs (by total memory: the run held them), else the
    cheapest one; the run proved that its current setting does not fit."""
    meta = run.meta()
    args = meta.get("args")
    if not isinstance(args, dict) or "model_name_or_path" not in args:
        raise Refused(f"{run.id}: run.json has no arguments to change")
    snapshot = snapshot or nvml.shared().read()
    gpus = meta.get("gpus") if isinstance(meta.get("gpus"), str) else None
    totals = [d.mem_total for d in nvml.visible(snapshot, gpus) if d.mem_total] if not snapshot.error else []
    capacity = min(totals) / GIB if totals else None
    try:
        report = advise(args, meta.get("nproc") or 1, capacity_gib=0.0, calibrate=False)
    except EstimateError as exc:
        raise Refused(f"no fix to suggest: {exc}") from None
    fitting = [s for s in report.suggestions if capacity and s.per_gpu_gib <= TIGHT * capacity]
    choices = fitting or report.suggestions
    if not choices:
        raise Refused(f"{run.id}: no change to its settings is predicted to use less memory")
    return choices[0]
