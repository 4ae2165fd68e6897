"""Compare the estimate with the GPUs' memory and say which change makes a configuration fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lftop.estimate import arch as arch_mod
from lftop.estimate import learned
from lftop.estimate.memory import Estimate, estimate, setup_from_args
from lftop.profiles import schema

TIGHT = 0.92  # above this share of capacity the allocator's fragmentation decides


@dataclass(frozen=True)
class Suggestion:
    set: dict
    per_gpu_gib: float
    why: str


@dataclass(frozen=True)
class Report:
    arch: arch_mod.Arch
    estimate: Estimate
    gpus: int
    capacity_gib: float | None
    suggestions: list[Suggestion] = field(default_factory=list)
    calibration: learned.Calibration | None = None

    @property
    def per_gpu_gib(self) -> float:
        return self.estimate.per_gpu_gib

    @property
    def verdict(self) -> str | None:
        return verdict(self.per_gpu_gib, self.capacity_gib)

    def to_dict(self) -> dict:
        return {
            "model": self.arch.name, "arch_source": self.arch.source, "params": self.estimate.params,
            "trainable_params": self.estimate.trainable_params, "gpus": self.gpus,
            "per_gpu_gib": round(self.per_gpu_gib, 2),
            "breakdown": {k: round(v, 3) for k, v in self.estimate.breakdown.items()},
            "notes": list(self.estimate.notes),
            "capacity_gib": None if self.capacity_gib is None else round(self.capacity_gib, 2),
            "verdict": self.verdict,
            "calibration": None if self.calibration is None else {
                "runs": self.calibration.runs, "factor": round(self.calibration.factor, 4),
                "gpu": self.calibration.gpu, "text": self.calibration.describe()},
            "suggestions": [{"set": s.set, "per_gpu_gib": round(s.per_gpu_gib, 2), "why": s.why} for s in self.suggestions],
        }


def verdict(gib: float, capacity: float | None) -> str | None:
    if capacity is None:
        return None
    return "fits" if gib <= TIGHT * capacity else "tight" if gib <= capacity else "oom"


def _candidates(args: dict, gpus: int) -> list[tuple[dict, str]]:
    """Changes a user can make, cheapest for them first."""
    out = []
    micro = int(args.get("per_device_train_batch_size", schema.default("per_device_train_batch_size")))
    accumulation = int(args.get("gradient_accumulation_steps", schema.default("gradient_accumulation_steps")))
    if micro > 1:
        out.append(({"per_device_train_batch_size": micro // 2, "gradient_accumulation_steps": accumulation * 2},
                    "halve the micro-batch and double accumulation: the effective batch stays the same"))
    if args.get("disable_gradient_checkpointing"):
        out.append(({"disable_gradient_checkpointing": False},
                    "gradient checkpointing keeps one input per layer instead of every activation (~20-30% slower)"))
    if not args.get("enable_liger_kernel"):
        out.append(({"enable_liger_kernel": True}, "Liger's fused cross-entropy never materialises the full fp32 logits"))
    cutoff = int(args.get("cutoff_len", schema.default("cutoff_len")))
    if cutoff > 256:
        out.append(({"cutoff_len": cutoff // 2}, "shorter sequences: check your data's length distribution first"))
    if args.get("finetuning_type", "lora") in ("lora", "oft"):
        for bits in (8, 4):
            if not args.get("quantization_bit") or args["quantization_bit"] > bits:
                out.append(({"quantization_bit": bits}, f"QLoRA: {bits}-bit base weights (bitsandbytes), adapters stay 16/32-bit"))
    ds = str(args.get("deepspeed") or "")
    if gpus > 1 and "z3" not in ds:
        out.append(({"deepspeed": "examples/deepspeed/ds_z3_config.json"},
                    f"ZeRO-3 shards weights, gradients and optimizer states over the {gpus} GPUs"))
    if "offload" not in ds:
        out.append(({"deepspeed": "examples/deepspeed/ds_z3_offload_config.json"},
                    "ZeRO-3 with CPU offload: states and weights in host RAM (much slower, needs RAM)"))
    return out


def advise(args: dict, gpus: int = 1, capacity_gib: float | None = None, base: Path | None = None,
           calibrate: bool = True, home: Path | None = None, gpu: str | None = None) -> Report:
    """The estimate for `args` on `gpus` GPUs and, when it does not fit, what would.

    With `calibrate` (the default), finished runs in the lftop home (`home`, else lftop.paths.home()) of a
    similar setup on this machine (GPU model `gpu` when given) correct the raw model; `calibrate=False`
    gives the raw model (`lftop estimate --no-calibration`).
    """
    model = arch_mod.load(args.get("model_name_or_path"))
    setup = setup_from_args(args, gpus, base)
    cal = None
    if calibrate:
        from lftop import paths

        where = Path(home) if home is not None else paths.home()
        learned.ingest(where)
        cal = learned.calibration(where, model, setup, gpu)
    current = learned.apply(estimate(model, setup), cal)
    suggestions = []
    if capacity_gib is not None and verdict(current.per_gpu_gib, capacity_gib) != "fits":
        for change, why in _candidates(args, gpus):
            new = learned.apply(estimate(model, setup_from_args({**args, **change}, gpus, base)), cal).per_gpu_gib
            if new < current.per_gpu_gib - 1e-4:  # any real saving; each shows its own number
                suggestions.append(Suggestion(change, new, why))
    return Report(model, current, gpus, capacity_gib, suggestions, cal)


def describe(report: Report) -> list[str]:
    lines = [f"model {report.arch.name or '?'} ({report.estimate.params / 1e9:.2f}B params, "
             f"{report.estimate.trainable_params / 1e6:.1f}M trainable) from {report.arch.source}",
             f"predicted peak per GPU: {report.per_gpu_gib:.1f} GiB" +
             (f" of {report.capacity_gib:.1f} GiB free: {report.verdict.upper()}" if report.capacity_gib else "")]
    lines += [f"  {part:<18} {gib:7.2f} GiB" for part, gib in report.estimate.breakdown.items() if gib >= 0.005]
    lines += [f"  assumes {note}" for note in report.estimate.notes]
    for s in report.suggestions:
        mark = "fits" if report.capacity_gib and s.per_gpu_gib <= TIGHT * report.capacity_gib else "still over"
        setting = ", ".join(f"{k} = {v!r}" for k, v in s.set.items())
        lines.append(f"  try {setting}: {s.per_gpu_gib:.1f} GiB ({mark}); {s.why}")
    return lines
