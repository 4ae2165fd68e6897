"""Per-GPU peak memory of a LLaMA-Factory training configuration, as named physical terms.

Every term is a thing in GPU memory: the weights; the gradients and optimizer states of what is
trained (sharded by ZeRO, moved off by offload); the LoRA adapters; the activations kept for the
backward pass (by layer, sequence, micro-batch, attention kernel and gradient checkpointing); the
logits and their fp32 loss copies; what the stage adds (the preference pair's second sequence, a
reference or reward model, a value head, the rollout's KV cache); a vision tower and its image
patches; and the CUDA context plus the caching allocator's slack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lftop.estimate.arch import Arch, EstimateError
from lftop.profiles import schema
from lftop.units import GIB

CUDA_CONTEXT = 0.55 * GIB  # CUDA context, cuBLAS workspace and kernels: what nvidia-smi shows for an idle torch process
DS_SUB_GROUP = 1e9  # DeepSpeed ZeRO-3 sub_group_size in LLaMA-Factory's and transformers' example configs
ALLOCATOR_SLACK = 0.06  # reserved but unallocated share of the caching allocator at peak (fragmentation)

# bytes of optimizer state per trainable parameter
OPTIMIZER_BYTES = {
    "adamw_torch": 8, "adamw_torch_fused": 8, "adamw_hf": 8, "adamw_apex_fused": 8, "adamw_anyprecision": 8,
    "paged_adamw_32bit": 8, "adamw_8bit": 2, "adamw_bnb_8bit": 2, "paged_adamw_8bit": 2, "adamw_torch_8bit": 2,
    "adamw_torch_4bit": 1, "lion_8bit": 1, "lion_32bit": 4, "paged_lion_8bit": 1, "paged_lion_32bit": 4,
    "adafactor": 0.05, "sgd": 0, "adagrad": 4, "rmsprop": 4,
}


@dataclass(frozen=True)
class Setup:
    """The knobs that decide memory, read from LLaMA-Factory arguments."""

    finetuning: str = "lora"  # lora | oft | freeze | full
    lora_rank: int = 8
    lora_target: str = "all"
    additional_target: str | None = None
    quant_bits: int | None = None
    dtype_bytes: int = 2  # weights and activations: bf16/fp16 2, fp32 4
    pure_bf16: bool = False
    optim: str = "adamw_torch_fused"
    micro_batch: int = 8
    seq: int = 2048
    grad_ckpt: bool = True
    unsloth_gc: bool = False
    attention: str = "sdpa"  # sdpa | fa2 | eager
    liger: bool = False
    gpus: int = 1
    zero: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False
    freeze_layers: int = 2
    galore: bool = False
    apollo: bool = False
    badam: bool = False
    low_rank: int = 16
    stage: str = "sft"  # pt | sft | rm | ppo | dpo | kto
    pref_loss: str = "sigmoid"  # dpo's loss: sigmoid (DPO) ... orpo and simpo need no reference model
    ref_model: bool = False  # a separate reference model was named (`ref_model`)
    reward_model_type: str = "lora"  # ppo: lora (an adapter on the policy) | full (a second model) | api
    max_new_tokens: int = 1024  # ppo: the response length the rollout generates
    freeze_vision_tower: bool = True
    freeze_projector: bool = True
    image_max_pixels: int = 768 * 768


STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")


@dataclass(frozen=True)
class Estimate:
    breakdown: dict[str, float]  # part -> GiB, summing to per_gpu_gib
    trainable_params: int
    params: int
    notes: tuple[str, ...] = ()  # assumptions behind the terms (stage, images per sample)

    @property
    def per_gpu_gib(self) -> float:
        return sum(self.breakdown.values())


def deepspeed_config(value: object, base: Path | None = None) -> dict:
    """A profile's `deepspeed` value as a dict: inline, a JSON file, or guessed from LLaMA-Factory's file names."""
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    path = Path(os.path.expandvars(os.path.expanduser(str(value))))
    for candidate in (path, (base or Path.cwd()) / path):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except ValueError:
                break
    name = path.name
    stage = 3 if "z3" in name else 2 if "z2" in name else 0
    offload = {"device": "cpu"} if "offload" in name else {}
    zero = {"stage": stage, "offload_optimizer": offload}
    if stage == 3 and offload:
        zero["offload_param"] = offload
    return {"zero_optimization": zero}


def _int_arg(args: dict, key: str, default: int | None = None, low: int = 1, high: int = 1 << 24) -> int:
    """An integer argument, checked; unset, LLaMA-Factory's own default (from its argument schema)."""
    if default is None:
        default = schema.default(key)
    value = args.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise EstimateError(f"{key} must be a whole number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise EstimateError(f"{key} must be a whole number, not {value!r}") from None
    if not number.is_integer() or not low <= number <= high:
        raise EstimateError(f"{key} = {value!r} is out of range ({low} to {high})")
    return int(number)


def setup_from_args(args: dict, gpus: int = 1, base: Path | None = None) -> Setup:
    """The memory knobs of LLaMA-Factory arguments; a bad value raises EstimateError naming the key."""
    ds = deepspeed_config(args.get("deepspeed"), base).get("zero_optimization", {})
    if not isinstance(ds, dict):
        raise EstimateError("deepspeed: zero_optimization must be an object")

    def offloaded(key: str) -> bool:
        section = ds.get(key)
        return isinstance(section, dict) and str(section.get("device", "none")) in ("cpu", "nvme")

    fp32 = not (args.get("bf16") or args.get("fp16") or args.get("pure_bf16"))
    attention = {"fa2": "fa2", "fa3": "fa2", "disabled": "eager"}.get(str(args.get("flash_attn", "auto")), "sdpa")
    stage = str(args.get("stage", "sft"))
    if stage not in STAGES:
        raise EstimateError(f"stage = {stage!r} is not one of {', '.join(STAGES)}")
    quant = args.get("quantization_bit")
    return Setup(
        finetuning=str(args.get("finetuning_type", "lora")),
        lora_rank=_int_arg(args, "lora_rank", high=1 << 16),
        lora_target=str(args.get("lora_target", "all")),
        additional_target=args.get("additional_target"),
        quant_bits=None if quant is None else _int_arg(args, "quantization_bit", 4, high=16),
        dtype_bytes=4 if fp32 else 2,
        pure_bf16=bool(args.get("pure_bf16")),
        optim=str(args.get("optim", "adamw_torch_fused")),
        micro_batch=_int_arg(args, "per_device_train_batch_size", high=1 << 16),
        seq=_int_arg(args, "cutoff_len", high=1 << 24),
        grad_ckpt=not args.get("disable_gradient_checkpointing", False),
        unsloth_gc=bool(args.get("use_unsloth_gc")),
        attention=attention,
        liger=bool(args.get("enable_liger_kernel")),
        gpus=max(1, gpus),
        zero=_int_arg(ds, "stage", 0, low=0, high=3),
        offload_optimizer=offloaded("offload_optimizer"),
        offload_param=offloaded("offload_param"),
        freeze_layers=_int_arg(args, "freeze_trainable_layers", low=-4096, high=4096),
        galore=bool(args.get("use_galore")),
        apollo=bool(args.get("use_apollo")),
        badam=bool(args.get("use_badam")),
        low_rank=_int_arg(args, "galore_rank", _int_arg(args, "apollo_rank")),
        stage=stage,
        pref_loss=str(args.get("pref_loss", "sigmoid")),
        ref_model=bool(args.get("ref_model")),
        reward_model_type=str(args.get("reward_model_type", "lora")),
        max_new_tokens=_int_arg(args, "max_new_tokens", high=1 << 20),
        freeze_vision_tower=bool(args.get("freeze_vision_tower", True)),
        freeze_projector=bool(args.get("freeze_multi_modal_projector", True)),
        image_max_pixels=_int_arg(args, "image_max_pixels", high=1 << 30),
    )


def _lora_params(arch: Arch, s: Setup) -> int:
    """LoRA A and B matrices: rank x (in + out) for every targeted projection of every layer."""
    q_out, kv_out, h = arch.heads * arch.hd, arch.kv_heads * arch.hd, arch.hidden
    inter = arch.moe_intermediate or arch.intermediate
    per_expert = max(1, arch.experts)
    shapes = {
        "q_proj": (h, q_out), "k_proj": (h, kv_out), "v_proj": (h, kv_out), "o_proj": (q_out, h),
        "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h),
    }
    if not arch.gated_mlp:
        shapes.pop("gate_proj")
    targets = [t.strip() for t in s.lora_target.split(",")]
    if "all" in targets:
        chosen = list(shapes)
    else:
        aliases = {"query_key_value": ["q_proj", "k_proj", "v_proj"], "c_attn": ["q_proj", "k_proj", "v_proj"],
                   "dense": ["o_proj"], "c_proj": ["o_proj"], "w1": ["gate_proj"], "w2": ["up_proj"],
                   "dense_h_to_4h": ["gate_proj", "up_proj"], "dense_4h_to_h": ["down_proj"]}
        chosen = [n for t in targets for n in aliases.get(t, [t]) if n in shapes]
    total = 0
    for name in chosen:
        fan_in, fan_out = shapes[name]
        copies = per_expert if name in ("gate_proj", "up_proj", "down_proj") else 1
        total += copies * s.lora_rank * (fan_in + fan_out)
    return arch.layers * total


def _activation_bytes_per_token_layer(arch: Arch, s: Setup) -> float:
    """Bytes one decoder layer keeps for backward, per token, without checkpointing."""
    h, q, kv = arch.hidden, arch.heads * arch.hd, arch.kv_heads * arch.hd
    inter = arch.moe_intermediate or arch.intermediate
    d = s.dtype_bytes
    # Llama-style RMSNorm upcasts to fp32 and keeps the fp32 input, the fp32 normalised copy and the cast output;
    # a fused LayerNorm (GPT-NeoX, Falcon, Phi) keeps only its input in the compute dtype (and per-row statistics)
    norms = 2 * h * d if arch.layer_norm else 2 * h * (4 + 4 + d)
    attention = (q + 2 * kv) * d + h * d  # q, k, v after rotary (for attention backward); attention output
    mlp = (3 if arch.gated_mlp else 2) * inter * d  # gate and up outputs, activation output
    # down_proj's input is kept when its weight is trained, when a LoRA reads it, or when bitsandbytes'
    # MatMul4Bit/8bit saves every quantized layer's input for its backward (ctx.tensors = (A, B))
    keeps_down = s.finetuning not in ("lora", "oft") or "all" in s.lora_target or "down" in s.lora_target
    down_input = inter * d if keeps_down or s.quant_bits else 0
    per_token = norms + attention + mlp + down_input
    if s.attention == "eager":
        per_token += arch.heads * s.seq * (d + 4)  # attention probabilities and fp32 softmax, s x s per head
    if s.finetuning in ("lora", "oft"):
        per_token += 7 * s.lora_rank * d  # the low-rank intermediate of every adapter
    return per_token


def _sequences(s: Setup) -> tuple[int, int]:
    """Sequences per micro-batch that keep activations, and their length, by stage."""
    if s.stage in ("rm", "dpo"):
        return 2 * s.micro_batch, s.seq  # chosen and rejected go through the model together
    if s.stage == "ppo":
        return s.micro_batch, s.seq + s.max_new_tokens  # the prompt and the generated response
    return s.micro_batch, s.seq


def _vision_terms(arch: Arch, s: Setup, sequences: int, trains_all: bool) -> dict[str, float]:
    """The vision tower's weights and the activations of one image per sequence at image_max_pixels."""
    v = arch.vision
    d = s.dtype_bytes
    tower, projector = v.tower_params(), v.projector_params()
    trained = (tower if trains_all and not s.freeze_vision_tower else 0) + \
        (projector if trains_all and not s.freeze_projector else 0)
    patches = v.patches(s.image_max_pixels) * sequences
    per_block = patches * (2 * v.hidden * (4 + 4 + d) + 4 * v.hidden * d
                           + (3 if v.gated_mlp else 2) * v.intermediate * d)
    if s.freeze_vision_tower:
        activations = 2 * per_block  # inference only: one block's forward at a time, nothing kept for backward
    elif s.grad_ckpt:
        activations = v.depth * patches * v.hidden * d + 2 * per_block
    else:
        activations = v.depth * per_block
    optimizer = OPTIMIZER_BYTES.get(s.optim, 8)
    return {
        "vision_weights": (tower + projector - trained) * d + trained * 4,
        "vision_training": trained * (4 + optimizer),
        "vision_activations": activations + v.tokens(s.image_max_pixels) * sequences * v.out_hidden * d,
    }


def _stage_terms(arch: Arch, s: Setup, tokens: int, model_bytes: float, world: int, zero: int) -> dict[str, float]:
    """What a stage holds beyond its policy: reference and reward models, their logits, a value head, a KV cache."""
    d = s.dtype_bytes
    per_logit_nograd = 8  # a no-grad forward: the fp32 logits and their log-softmax, freed once the log-probs are taken
    lora = s.finetuning in ("lora", "oft")
    # a reference model: DPO (not ORPO/SimPO), KTO and PPO load a second copy for full/freeze training;
    # LoRA's reference is the same base with its adapters disabled (LLaMA-Factory's create_ref_model)
    needs_reference = (s.stage == "dpo" and s.pref_loss not in ("orpo", "simpo")) or s.stage in ("kto", "ppo")
    second = model_bytes / world if zero == 3 else model_bytes
    terms: dict[str, float] = {}
    if needs_reference:
        terms["reference_model"] = second if (s.ref_model or not lora) else 0.0
        terms["reference_logits"] = tokens * arch.vocab * per_logit_nograd
    if s.stage == "kto":
        terms["reference_logits"] = s.micro_batch * s.seq * arch.vocab * per_logit_nograd  # KL batch, then reference
    if s.stage in ("rm", "ppo"):
        terms["value_head"] = (arch.hidden + 1) * 16  # fp32 weight, gradient and two Adam moments
    if s.stage == "ppo":
        terms["reward_model"] = second if s.reward_model_type == "full" else 0.0
        terms["rollout_kv_cache"] = s.micro_batch * (s.seq + s.max_new_tokens) * arch.layers * 2 * arch.kv_heads \
            * arch.hd * d
    return terms


def estimate(arch: Arch, s: Setup) -> Estimate:
    params, linear = arch.params(), arch.linear_params()
    other = params - linear
    world = s.gpus
    zero = s.zero if world > 1 or s.zero else 0

    # what is trained
    if s.finetuning in ("lora", "oft"):
        trainable = _lora_params(arch, s)
        if s.additional_target:
            trainable += arch.embedding_params()
    elif s.finetuning == "freeze":
        layers = min(abs(s.freeze_layers), arch.layers)
        trainable = linear * layers // arch.layers
    else:
        trainable = params
    if s.badam:
        trainable = params // max(1, arch.layers)  # one block at a time
    adapters = trainable if s.finetuning in ("lora", "oft") else 0

    # weights: frozen base in the compute dtype (or 8/4-bit on linear layers), trainable in fp32 for AMP
    # DeepSpeed casts the module to the 16-bit compute dtype (engine: module.bfloat16()) and keeps fp32 master
    # weights in its optimizer instead of LLaMA-Factory's fp32 upcast of trainable parameters
    trainable_bytes = 2 if (s.pure_bf16 or s.badam or (zero >= 1 and s.dtype_bytes == 2)) else 4
    if s.quant_bits in (4, 8) and s.finetuning in ("lora", "oft"):
        per_linear = 0.5 + 0.035 if s.quant_bits == 4 else 1.0 + 4 / 64  # NF4 + double-quantized absmax; int8 + row scales
        base = linear * per_linear + other * s.dtype_bytes
    elif s.finetuning in ("lora", "oft"):
        base = params * s.dtype_bytes
    else:  # full or freeze: trainable parameters are kept at trainable_bytes
        frozen = params - trainable
        base = frozen * s.dtype_bytes + trainable * (s.dtype_bytes if trainable_bytes == 2 else 4)
    adapter_weights = adapters * 4
    weights = base
    if zero == 3:
        # sharded; with offload only the layers being gathered (current and prefetched) stay on the GPU
        gathered = 2 * (arch.attention_params() + arch.mlp_params()) * s.dtype_bytes  # current and prefetched layer
        weights = gathered if s.offload_param else base / world + gathered

    # gradients and optimizer states of the trainable parameters
    grad_bytes = 4 if trainable_bytes == 4 else 2
    optimizer_bytes = OPTIMIZER_BYTES.get(s.optim, 8)
    if s.pure_bf16:
        optimizer_bytes /= 2  # torch optimizers keep their states in the parameters' dtype: bf16
    if s.galore or s.apollo:
        optimizer_bytes *= min(1.0, s.low_rank / arch.hidden)
    if zero >= 1 and trainable_bytes == 2 and not s.pure_bf16:
        optimizer_bytes += 4  # DeepSpeed keeps an fp32 master copy of 16-bit trainable weights
    gradients = trainable * grad_bytes
    states = trainable * optimizer_bytes
    if zero >= 1:
        states = 0 if s.offload_optimizer else states / world
    if zero >= 2:
        gradients = 0 if s.offload_optimizer else gradients / world
    if world > 1 and zero == 0:
        gradients *= 2  # DDP's bucket copy of the gradients beside .grad
    adapter_weights_on_gpu = adapter_weights / world if zero == 3 else adapter_weights
    fp32_grads = 0.0
    if zero >= 1 and trainable_bytes == 2 and not s.pure_bf16 and not s.offload_optimizer:
        # at the step DeepSpeed upcasts this rank's gradient partition to fp32 for the master weights;
        # ZeRO-3 does it one sub-group at a time (sub_group_size: 1e9 parameters in LLaMA-Factory's configs)
        partition = trainable / world
        fp32_grads = 4 * (min(partition, DS_SUB_GROUP) if zero == 3 else partition)

    # activations: every sequence the stage sends through the model with gradients
    sequences, seq = _sequences(s)
    if arch.vision is not None:
        seq = max(seq, arch.vision.tokens(s.image_max_pixels) + 1)  # image tokens cannot be cut off
    tokens = sequences * seq
    layer = _activation_bytes_per_token_layer(arch, s) * tokens
    if s.grad_ckpt:
        kept = 0 if s.unsloth_gc else arch.layers * arch.hidden * s.dtype_bytes * tokens  # each layer's input
        activations = kept + 2 * layer  # one layer recomputed, plus its backward temporaries
    else:
        activations = arch.layers * layer
    # logits, then fp32 copy, log-softmax and gradient; a bf16 loss keeps a shifted copy, log-softmax and gradient.
    # Liger's fused cross-entropy replaces them only where the model computes the loss from labels (pt, sft);
    # the preference and reward trainers take the logits themselves (DPO's concatenated_forward casts them to fp32).
    per_logit = s.dtype_bytes + 4 + 4 if arch.fp32_loss else 4 * s.dtype_bytes
    if s.stage == "rm":
        per_logit = s.dtype_bytes + 4  # trl's value-head wrapper upcasts the unused LM logits; no gradient flows
    fused = s.liger and s.stage in ("pt", "sft")
    logits = 0.0 if fused else tokens * arch.vocab * per_logit
    if "lm_head" in s.lora_target and s.finetuning in ("lora", "oft") and not fused:
        logits += tokens * arch.vocab * 2 * s.dtype_bytes  # a LoRA on lm_head: the adapter's output and the sum
    dequant = 0.0
    if s.quant_bits in (4, 8) and s.finetuning in ("lora", "oft"):
        # bitsandbytes dequantizes each weight to the compute dtype for its matmul (forward, again in backward)
        widest = max(arch.hidden * arch.heads * arch.hd, arch.hidden * (arch.moe_intermediate or arch.intermediate))
        dequant = 2 * widest * s.dtype_bytes

    model_bytes = params * s.dtype_bytes
    breakdown = {
        "weights": weights,
        "adapters": adapter_weights_on_gpu,
        "gradients": gradients,
        "optimizer": states,
        "fp32_grad_partition": fp32_grads,
        "activations": activations,
        "logits": logits,
        "dequant_buffer": dequant,
        **_stage_terms(arch, s, tokens, model_bytes, world, zero),
    }
    notes = [f"stage {s.stage}: {sequences} sequence(s) of {seq} tokens per micro-batch"]
    if arch.vision is not None:
        breakdown.update(_vision_terms(arch, s, sequences, s.finetuning in ("full", "freeze")))
        notes.append(f"one image per sequence at image_max_pixels = {s.image_max_pixels}: "
                     f"{arch.vision.tokens(s.image_max_pixels)} image tokens, "
                     f"{arch.vision.patches(s.image_max_pixels)} vision patches")
    dynamic = sum(breakdown.values())
    breakdown["cuda_context"] = CUDA_CONTEXT
    breakdown["allocator_slack"] = ALLOCATOR_SLACK * dynamic
    return Estimate({k: v / GIB for k, v in breakdown.items()}, trainable, params, tuple(notes))
