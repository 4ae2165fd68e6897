"""Relative error of lftop's memory estimate on published measurements, beside the README rule of thumb's.

    python benchmarks/estimate_calibration.py [path/to/memory_calibration.csv] [--rows]

Each row of ../shared/data/memory_calibration.csv that can be written as LLaMA-Factory arguments is
estimated with the row's own architecture numbers. Rows measured with torch.cuda.max_memory_allocated
are compared with the estimate less the CUDA context and allocator slack (what that counter cannot see);
rows of unstated method with the whole estimate (what nvidia-smi shows). Skipped: quality C rows,
encoder-decoder models, rows with no number, and Qwen's rows that train wte and lm_head through
modules_to_save in bf16 (LLaMA-Factory upcasts trainable modules to fp32, so no profile reproduces them).
Goal: median relative error at most 10%, 90th percentile at most 25%.
"""

from __future__ import annotations

import csv
import re
import statistics
import sys
from pathlib import Path

from lftop.estimate.arch import Arch
from lftop.estimate.memory import estimate, setup_from_args

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "memory_calibration.csv"


def _int(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


def row_to_case(r: dict) -> tuple[Arch, dict, int] | None:
    if r["quality"] == "C" or "enc-dec" in r["arch_family"] or not r["peak_per_gpu_GiB"]:
        return None
    if "modules_to_save" in r["lora_targets"]:
        return None  # Qwen's script trains wte and lm_head in bf16; LLaMA-Factory upcasts trainable modules to fp32
    hidden, layers, heads, kv = _int(r["hidden"]), _int(r["layers"]), _int(r["heads"]), _int(r["kv_heads"])
    inter, vocab, seq, micro = _int(r["intermediate"]), _int(r["vocab"]), _int(r["seq_len"]), _int(r["micro_batch"])
    if None in (hidden, layers, heads, kv, inter, vocab, seq, micro) or "+" in r["layers"]:
        return None
    family = r["arch_family"].lower()
    arch = Arch(hidden, layers, heads, kv, inter, vocab, tied="tied" in family,
                head_dim=256 if "gemma" in family else None, fp32_loss="qwen (v1)" not in family,
                gated_mlp=not any(k in family for k in ("falcon", "gpt_neox", "phi (", "bloom")) and r["model"] != "Phi-2",
                name=r["model"])
    method = r["method"].lower()
    targets = r["lora_targets"]
    args: dict = {
        "finetuning_type": "full" if method == "full" else "lora",
        "lora_rank": _int(r["lora_rank"]) or 8,
        "lora_target": "all,lm_head" if "head" in targets.replace("lm_head fully", "") else "all"
        if ("all" in targets or "c_attn" in targets) else "q_proj,v_proj"
        if ("q" in targets) else "query_key_value" if "query_key_value" in targets else "all",
        "per_device_train_batch_size": micro,
        "cutoff_len": seq,
        "disable_gradient_checkpointing": not r["grad_ckpt"].startswith("on"),
        "flash_attn": "fa2" if ("flash" in r["attn_impl"].lower() or "FA2" in r["attn_impl"]) else "sdpa",
        "optim": "adamw_torch",
    }
    precision = r["precision"]
    if "pure" in precision:
        args["pure_bf16"] = True
    elif "fp32" not in precision:
        args["bf16"] = True
    if method == "qlora":
        args["quantization_bit"] = 8 if "8" in r["quant"] and "4" not in r["quant"] else 4
    if "Unsloth" in r["attn_impl"]:
        args["use_unsloth_gc"] = True
    stage = _int(r["zero_stage"])
    if stage and method != "qlora":
        args["deepspeed"] = f"ds_z{stage}{'_offload' if 'CPU' in r['offload'] else ''}_config.json"
    return arch, args, _int(r["n_gpus"]) or 1


def rule_of_thumb(r: dict) -> float:
    """LLaMA-Factory README: full AMP 18x, pure_bf16 8x, LoRA 2x, QLoRA-8 x, QLoRA-4 x/2 GB for x billion params."""
    x = float(r["params_B"])
    method = r["method"].lower()
    if method == "full":
        gb = 8 * x if "pure" in r["precision"] else 18 * x
    elif method == "qlora":
        gb = x if ("8" in r["quant"] and "4" not in r["quant"]) else x / 2
    else:
        gb = 2 * x
    return gb * 1e9 / (1 << 30)


def main(argv: list[str]) -> int:
    path = Path(next((a for a in argv if not a.startswith("--")), DEFAULT))
    rows = list(csv.DictReader(path.open()))
    ours, thumb, shown = [], [], []
    for r in rows:
        case = row_to_case(r)
        if case is None:
            continue
        arch, args, gpus = case
        result = estimate(arch, setup_from_args(args, gpus))
        predicted = result.per_gpu_gib
        if "allocated" in r["measure_method"]:
            predicted -= result.breakdown["cuda_context"] + result.breakdown["allocator_slack"]
        measured = float(r["peak_per_gpu_GiB"])
        ours.append(abs(predicted - measured) / measured)
        thumb.append(abs(rule_of_thumb(r) - measured) / measured)
        shown.append(f"{r['row_id']:<8} {r['model']:<24} {r['method']:<6} seq {r['seq_len']:>5} "
                     f"measured {measured:6.2f}  lftop {predicted:6.2f} ({ours[-1]:5.1%})  rule {rule_of_thumb(r):6.2f} ({thumb[-1]:5.1%})")

    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10)[-1]

    if "--rows" in argv:
        print("\n".join(shown))
    print(f"{len(ours)} of {len(rows)} rows expressible as LLaMA-Factory arguments")
    print(f"lftop estimate : median error {statistics.median(ours):6.1%}   90th percentile {p90(ours):6.1%}")
    print(f"README rule    : median error {statistics.median(thumb):6.1%}   90th percentile {p90(thumb):6.1%}")
    print(f"ratio (rule / lftop) of median errors: {statistics.median(thumb) / statistics.median(ours):.1f}x")
    print("goal: median <= 10%, 90th percentile <= 25%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
