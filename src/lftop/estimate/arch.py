"""Architecture facts of a model: from its config.json (local or in the Hugging Face cache) or a table."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path


class EstimateError(ValueError):
    """A named reason why no memory estimate can be made (bad model facts or arguments)."""


class UnknownModel(EstimateError):
    """The model's architecture is unknown or its config.json cannot describe a decoder the estimator knows."""


LIMITS = {"hidden": 1 << 17, "layers": 4096, "heads": 4096, "kv_heads": 4096, "intermediate": 1 << 20,
          "vocab": 1 << 24, "head_dim": 4096, "experts": 4096, "moe_intermediate": 1 << 20,
          "shared_intermediate": 1 << 20, "depth": 1024, "patch": 1024, "merge": 64, "image_size": 1 << 14}


@dataclass(frozen=True)
class Vision:
    """A vision-language model's image side: the vision transformer and the projector into the language model."""

    depth: int
    hidden: int
    intermediate: int
    patch: int
    merge: int = 1  # Qwen-VL/GLM-4V merge merge x merge patches into one token; fixed-size towers use 1
    image_size: int | None = None  # fixed-resolution towers (CLIP, SigLIP, InternViT): one tile of this size
    downsample: float = 1.0  # InternVL's pixel shuffle keeps this share of each side's patches
    gated_mlp: bool = False
    out_hidden: int = 0  # the language model's width the projector maps to

    def tower_params(self) -> int:
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate
        return self.depth * (4 * self.hidden * self.hidden + mlp + 4 * self.hidden) + 3 * self.patch * self.patch * \
            self.hidden * 2  # patch embedding (two frames for video-capable towers)

    def projector_params(self) -> int:
        fan_in = self.hidden * self.merge * self.merge
        return fan_in * fan_in + fan_in * self.out_hidden if self.merge > 1 else \
            fan_in * self.out_hidden + self.out_hidden * self.out_hidden

    def patches(self, max_pixels: int) -> int:
        """Vision-transformer positions for one image of at most `max_pixels` (before merging)."""
        if self.image_size:
            return (self.image_size // self.patch) ** 2
        side = self.patch * self.merge
        return max(1, max_pixels // (side * side)) * self.merge * self.merge

    def tokens(self, max_pixels: int) -> int:
        """Language-model tokens one image becomes."""
        return max(1, int(self.patches(max_pixels) * self.downsample ** 2) // (self.merge * self.merge))


@dataclass(frozen=True)
class Arch:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False
    head_dim: int | None = None
    gated_mlp: bool = True  # SwiGLU: gate, up and down; False: up and down only (GPT-NeoX, Falcon, Phi-2)
    layer_norm: bool = False  # LayerNorm in the compute dtype (GPT-NeoX, Falcon, Phi); False: Llama's fp32 RMSNorm
    experts: int = 1  # MoE experts per layer (1: dense)
    moe_intermediate: int | None = None
    shared_intermediate: int = 0
    fp32_loss: bool = True  # transformers' own models upcast logits for the loss; Qwen (v1) remote code does not
    vision: Vision | None = None
    family: str = ""  # model_type (or the table's key) that groups similar models for calibration
    name: str = ""
    source: str = ""

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def attention_params(self) -> int:
        q_out, kv_out = self.heads * self.hd, self.kv_heads * self.hd
        return self.hidden * q_out + 2 * self.hidden * kv_out + q_out * self.hidden

    def mlp_params(self) -> int:
        matrices = 3 if self.gated_mlp else 2
        if self.experts > 1:
            inter = self.moe_intermediate or self.intermediate
            return self.experts * matrices * self.hidden * inter + matrices * self.hidden * self.shared_intermediate \
                + self.hidden * self.experts
        return matrices * self.hidden * self.intermediate

    def linear_params(self) -> int:
        """Parameters of the decoder layers' linear projections: what LoRA `all` targets and bnb quantizes."""
        return self.layers * (self.attention_params() + self.mlp_params())

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.layers * 2 * self.hidden + self.hidden


def _number(c: dict, keys: tuple[str, ...], what: str, default: object = None, limit: str = "") -> int:
    """The first present key's value as a positive integer within LIMITS, else a named UnknownModel."""
    value = next((c[k] for k in keys if c.get(k) is not None), default)
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        value = value[0]  # InternVL writes square sizes as [448, 448]
    if value is None:
        raise UnknownModel(f"no {what} ({' / '.join(keys)}): not a transformer decoder the estimator knows "
                           "(state-space models such as Mamba have no attention heads)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not value.is_integer()):  # NaN and inf are not integers either
        raise UnknownModel(f"{keys[0]} must be a whole number, not {value!r}")
    value = int(value)
    if value <= 0 or value > LIMITS.get(limit or what, 1 << 24):
        raise UnknownModel(f"{keys[0]} = {value} is out of range (1 to {LIMITS.get(limit or what, 1 << 24)})")
    return value


def _ratio(value: object) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
    return float(value) if ok else 1.0


LAYER_NORM_TYPES = ("phi", "gpt_neox", "falcon", "gpt2", "bloom", "stablelm")

# transformers' defaults for text configs that only list what differs (llava-hf's text_config)
TEXT_DEFAULTS = {"llama": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                           "intermediate_size": 11008, "vocab_size": 32000}}


def _section(config: dict, key: str) -> dict | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UnknownModel(f"{key} must be an object, not {type(value).__name__}")
    return value


def vision_from_config(v: dict, text_hidden: int) -> Vision:
    """The vision tower of Qwen2/2.5/3-VL, GLM-4V, LLaVA (CLIP/SigLIP) and InternVL configs."""
    hidden = _number(v, ("embed_dim", "hidden_size", "width"), "vision hidden size", limit="hidden")
    merge = _number(v, ("spatial_merge_size",), "spatial_merge_size", default=1, limit="merge")
    inter_default = int(v["mlp_ratio"] * hidden) if isinstance(v.get("mlp_ratio"), (int, float)) and \
        not isinstance(v.get("mlp_ratio"), bool) and 0 < v["mlp_ratio"] < 64 else 4 * hidden
    fixed = None if merge > 1 else _number(v, ("image_size",), "image_size", default=336, limit="image_size")
    act = str(v.get("hidden_act", ""))
    out = v.get("out_hidden_size") if isinstance(v.get("out_hidden_size"), int) else text_hidden
    return Vision(
        depth=_number(v, ("depth", "num_hidden_layers", "num_layers"), "vision depth", limit="depth"),
        hidden=hidden,
        intermediate=_number(v, ("intermediate_size",), "vision intermediate size", default=inter_default,
                             limit="intermediate"),
        patch=_number(v, ("patch_size",), "patch_size", default=14, limit="patch"),
        merge=merge,
        image_size=fixed,
        gated_mlp="silu" in act,
        out_hidden=_number({"o": out}, ("o",), "projector width", limit="hidden"),
    )


def from_config(config: object, name: str = "", source: str = "config.json") -> Arch:
    """Read the keys Llama, Qwen, Mistral, Gemma, Phi, Baichuan, ChatGLM, MoE and vision-language configs use.

    Anything that is not a decoder with positive, bounded sizes raises UnknownModel naming the key at fault.
    """
    if not isinstance(config, dict):
        raise UnknownModel(f"config.json must be an object, not {type(config).__name__}")
    c = _section(config, "text_config") or _section(config, "llm_config") or config
    c = {**TEXT_DEFAULTS.get(str(c.get("model_type")), {}), **c}  # llava-hf's text_config lists only overrides
    hidden = _number(c, ("hidden_size", "n_embd", "d_model"), "hidden size", limit="hidden")
    heads = _number(c, ("num_attention_heads", "n_head"), "attention heads", limit="heads")
    model_type = str(c.get("model_type") or config.get("model_type") or "")
    kv = _number(c, ("num_key_value_heads", "multi_query_group_num", "num_kv_heads"), "key/value heads",
                 default=heads, limit="kv_heads")
    if c.get("multi_query_attention") is False:
        kv = heads
    if kv > heads:
        raise UnknownModel(f"num_key_value_heads = {kv} exceeds num_attention_heads = {heads}")
    inter = _number(c, ("intermediate_size", "ffn_hidden_size", "n_inner"), "intermediate size",
                    default=4 * hidden, limit="intermediate")
    experts = _number(c, ("num_local_experts", "num_experts", "n_routed_experts"), "experts", default=1)
    head_dim = c.get("head_dim") if c.get("head_dim") is not None else c.get("kv_channels")
    vision_section = _section(config, "vision_config")
    return Arch(
        hidden=hidden,
        layers=_number(c, ("num_hidden_layers", "num_layers", "n_layer"), "layers"),
        heads=heads,
        kv_heads=kv,
        intermediate=inter,
        vocab=_number(c, ("vocab_size", "padded_vocab_size"), "vocabulary size", limit="vocab"),
        tied=bool(c.get("tie_word_embeddings", config.get("tie_word_embeddings",
                                                          model_type in ("gemma", "gemma2", "gemma3_text")))),
        head_dim=None if head_dim is None else _number({"head_dim": head_dim}, ("head_dim",), "head_dim"),
        gated_mlp=model_type not in LAYER_NORM_TYPES,
        layer_norm=model_type in LAYER_NORM_TYPES,
        experts=experts,
        moe_intermediate=None if c.get("moe_intermediate_size") is None else
        _number(c, ("moe_intermediate_size",), "moe_intermediate"),
        shared_intermediate=0 if not c.get("shared_expert_intermediate_size") else
        _number(c, ("shared_expert_intermediate_size",), "shared_intermediate"),
        fp32_loss=model_type != "qwen",
        vision=None if vision_section is None else replace(
            vision_from_config(vision_section, hidden),
            downsample=_ratio(config.get("downsample_ratio"))),
        family=str(config.get("model_type") or model_type),
        name=name,
        source=source,
    )


# name fragment -> (hidden, layers, heads, kv_heads, intermediate, vocab, tied, head_dim, gated)
TABLE: dict[str, tuple] = {
    "llama-2-7b": (4096, 32, 32, 32, 11008, 32000, False, None, True),
    "llama-2-13b": (5120, 40, 40, 40, 13824, 32000, False, None, True),
    "llama-2-70b": (8192, 80, 64, 8, 28672, 32000, False, None, True),
    "llama-3-8b": (4096, 32, 32, 8, 14336, 128256, False, None, True),
    "llama-3-70b": (8192, 80, 64, 8, 28672, 128256, False, None, True),
    "llama-3.1-8b": (4096, 32, 32, 8, 14336, 128256, False, None, True),
    "llama-3.1-70b": (8192, 80, 64, 8, 28672, 128256, False, None, True),
    "llama-3.2-1b": (2048, 16, 32, 8, 8192, 128256, True, None, True),
    "llama-3.2-3b": (3072, 28, 24, 8, 8192, 128256, True, None, True),
    "qwen-1_8b": (2048, 24, 16, 16, 5504, 151936, False, None, True),
    "qwen-7b": (4096, 32, 32, 32, 11008, 151936, False, None, True),
    "qwen-14b": (5120, 40, 40, 40, 13696, 152064, False, None, True),
    "qwen-72b": (8192, 80, 64, 64, 24576, 152064, False, None, True),
    "qwen1.5-0.5b": (1024, 24, 16, 16, 2816, 151936, True, None, True),
    "qwen1.5-1.8b": (2048, 24, 16, 16, 5504, 151936, False, None, True),
    "qwen1.5-4b": (2560, 40, 20, 20, 6912, 151936, False, None, True),
    "qwen1.5-7b": (4096, 32, 32, 32, 11008, 151936, False, None, True),
    "qwen1.5-14b": (5120, 40, 40, 40, 13696, 152064, False, None, True),
    "qwen2-0.5b": (896, 24, 14, 2, 4864, 151936, True, None, True),
    "qwen2-1.5b": (1536, 28, 12, 2, 8960, 151936, True, None, True),
    "qwen2-7b": (3584, 28, 28, 4, 18944, 152064, False, None, True),
    "qwen2-72b": (8192, 80, 64, 8, 29568, 152064, False, None, True),
    "qwen2.5-0.5b": (896, 24, 14, 2, 4864, 151936, True, None, True),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960, 151936, True, None, True),
    "qwen2.5-3b": (2048, 36, 16, 2, 11008, 151936, True, None, True),
    "qwen2.5-7b": (3584, 28, 28, 4, 18944, 152064, False, None, True),
    "qwen2.5-14b": (5120, 48, 40, 8, 13824, 152064, False, None, True),
    "qwen2.5-32b": (5120, 64, 40, 8, 27648, 152064, False, None, True),
    "qwen2.5-72b": (8192, 80, 64, 8, 29568, 152064, False, None, True),
    "qwen3-0.6b": (1024, 28, 16, 8, 3072, 151936, True, 128, True),
    "qwen3-1.7b": (2048, 28, 16, 8, 6144, 151936, True, 128, True),
    "qwen3-4b": (2560, 36, 32, 8, 9728, 151936, True, 128, True),
    "qwen3-8b": (4096, 36, 32, 8, 12288, 151936, False, 128, True),
    "qwen3-14b": (5120, 40, 40, 8, 17408, 151936, False, 128, True),
    "qwen3-32b": (5120, 64, 64, 8, 25600, 151936, False, 128, True),
    "mistral-7b": (4096, 32, 32, 8, 14336, 32768, False, None, True),
    "chatglm3-6b": (4096, 28, 32, 2, 13696, 65024, False, 128, True),
    "glm-4-9b": (4096, 40, 32, 2, 13696, 151552, False, 128, True),
    "deepseek-r1-distill-qwen-1.5b": (1536, 28, 12, 2, 8960, 151936, False, None, True),
    "deepseek-r1-distill-qwen-7b": (3584, 28, 28, 4, 18944, 152064, False, None, True),
    "deepseek-r1-distill-qwen-14b": (5120, 48, 40, 8, 13824, 152064, False, None, True),
    "deepseek-r1-distill-qwen-32b": (5120, 64, 40, 8, 27648, 152064, False, None, True),
    "deepseek-r1-distill-llama-8b": (4096, 32, 32, 8, 14336, 128256, False, None, True),
    "deepseek-r1-distill-llama-70b": (8192, 80, 64, 8, 28672, 128256, False, None, True),
    "baichuan2-7b": (4096, 32, 32, 32, 11008, 125696, False, None, True),
    "baichuan2-13b": (5120, 40, 40, 40, 13696, 125696, False, None, True),
    "phi-2": (2560, 32, 32, 32, 10240, 51200, False, None, False),
    "phi-3-mini": (3072, 32, 32, 32, 8192, 32064, False, None, True),
    "phi-3.5-mini": (3072, 32, 32, 32, 8192, 32064, False, None, True),
    "gemma-2b": (2048, 18, 8, 1, 16384, 256000, True, 256, True),
    "gemma-7b": (3072, 28, 16, 16, 24576, 256000, True, 256, True),
    "gemma-2-2b": (2304, 26, 8, 4, 9216, 256000, True, 256, True),
    "gemma-2-9b": (3584, 42, 16, 8, 14336, 256000, True, 256, True),
    "gemma-2-27b": (4608, 46, 32, 16, 36864, 256000, True, 128, True),
    "falcon-7b": (4544, 32, 71, 1, 18176, 65024, False, None, False),
}


QWEN2_VIT = Vision(depth=32, hidden=1280, intermediate=5120, patch=14, merge=2)
QWEN25_VIT = Vision(depth=32, hidden=1280, intermediate=3420, patch=14, merge=2, gated_mlp=True)
CLIP_L_336 = Vision(depth=24, hidden=1024, intermediate=4096, patch=14, image_size=336)
INTERN_VIT_300M = Vision(depth=24, hidden=1024, intermediate=4096, patch=14, image_size=448, downsample=0.5)

# vision-language models: name fragment -> (language model's TABLE key or tuple, vision tower, vocabulary)
VISION_TABLE: dict[str, tuple] = {
    "qwen2-vl-2b": ("qwen2-1.5b", QWEN2_VIT, None),
    "qwen2-vl-7b": ("qwen2-7b", QWEN2_VIT, None),
    "qwen2-vl-72b": ("qwen2-72b", QWEN2_VIT, None),
    "qwen2.5-vl-3b": ("qwen2.5-3b", QWEN25_VIT, None),
    "qwen2.5-vl-7b": ("qwen2.5-7b", QWEN25_VIT, None),
    "qwen2.5-vl-32b": ("qwen2.5-32b", QWEN25_VIT, None),
    "qwen2.5-vl-72b": ("qwen2.5-72b", QWEN25_VIT, None),
    "qwen3-vl-8b": ("qwen3-8b", Vision(depth=27, hidden=1152, intermediate=4304, patch=16, merge=2), None),
    "llava-1.5-7b": ("llama-2-7b", CLIP_L_336, 32064),
    "llava-1.5-13b": ("llama-2-13b", CLIP_L_336, 32064),
    "internvl3-8b": ("qwen2.5-7b", INTERN_VIT_300M, 151674),
}


def _normalise(name: str) -> str:
    base = name.rstrip("/").split("/")[-1].lower()
    for suffix in ("-instruct", "-chat", "-hf", "-base", "-it"):
        base = base.replace(suffix, "")
    return base.replace("meta-llama-3", "llama-3").replace("_", "-").replace("qwen-1-8b", "qwen-1_8b")


def from_table(name: str) -> Arch | None:
    base = _normalise(name)
    for key in sorted(VISION_TABLE, key=len, reverse=True):
        if base.startswith(key):
            text, tower, vocab = VISION_TABLE[key]
            lm = from_table(text)
            out = replace(tower, out_hidden=lm.hidden)
            return replace(lm, vocab=vocab or lm.vocab, vision=out, family=key.rsplit("-", 1)[0], name=key)
    for key in sorted(TABLE, key=len, reverse=True):
        if base == key or base.startswith(key + "-") or base.startswith(key):
            h, l, a, kv, i, v, tied, hd, gated = TABLE[key]
            qwen_v1 = key.startswith("qwen-")
            family = key.rsplit("-", 1)[0]
            return Arch(h, l, a, kv, i, v, tied, hd, gated, layer_norm=not gated, fp32_loss=not qwen_v1, family=family,
                        name=key,
                        source="built-in table")
    return None


def _hf_cache(name: str) -> Path | None:
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    try:
        if not snapshots.is_dir():
            return None
        found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    except OSError:  # a name too long for the filesystem, a dangling snapshot link
        return None
    return found[-1] if found else None


def load(model_name_or_path: str) -> Arch:
    """Facts for a local model folder, a model in the Hugging Face cache, or a popular architecture."""
    if not isinstance(model_name_or_path, str) or not model_name_or_path.strip() or "\0" in model_name_or_path:
        raise UnknownModel(f"model_name_or_path must name a model, not {model_name_or_path!r}")
    local = Path(os.path.expanduser(model_name_or_path)) / "config.json"
    for path, source in ((local, "config.json"), (_hf_cache(model_name_or_path), "Hugging Face cache")):
        try:
            found = path is not None and path.is_file()
        except OSError:  # a name too long for the filesystem, a folder we may not read
            found = False
        if found:
            try:
                with path.open("rb") as f:
                    text = f.read(1 << 20).decode()  # a config.json is a few KB; never read a device whole
                return from_config(json.loads(text), model_name_or_path, f"{source}: {path}")
            except (OSError, ValueError, RecursionError) as exc:  # UnknownModel is a ValueError too
                raise UnknownModel(f"{path}: cannot read the architecture ({exc})") from None
    known = from_table(model_name_or_path)
    if known:
        return replace(known, source=f"built-in table ({known.name})")
    raise UnknownModel(
        f"{model_name_or_path}: no config.json found locally or in the Hugging Face cache, and not a known "
        "architecture; set model_name_or_path to a local model folder to estimate its memory"
    )
