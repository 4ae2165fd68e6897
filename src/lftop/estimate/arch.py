"""Architecture facts of a model: from its config.json (local or in the Hugging Face cache) or a table."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path


class UnknownModel(Exception):
    pass


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
    experts: int = 1  # MoE experts per layer (1: dense)
    moe_intermediate: int | None = None
    shared_intermediate: int = 0
    fp32_loss: bool = True  # transformers' own models upcast logits for the loss; Qwen (v1) remote code does not
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


def from_config(config: dict, name: str = "", source: str = "config.json") -> Arch:
    """Read the keys Llama, Qwen, Mistral, Gemma, Phi, Baichuan, ChatGLM and MoE configs use."""
    c = config.get("text_config", config)
    hidden = c.get("hidden_size") or c.get("n_embd") or c["d_model"]
    heads = c.get("num_attention_heads") or c.get("n_head")
    model_type = c.get("model_type", "")
    kv = c.get("num_key_value_heads") or c.get("multi_query_group_num") or c.get("num_kv_heads") or heads
    if c.get("multi_query_attention") is False:
        kv = heads
    inter = c.get("intermediate_size") or c.get("ffn_hidden_size") or c.get("n_inner") or 4 * hidden
    experts = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts") or 1
    return Arch(
        hidden=hidden,
        layers=c.get("num_hidden_layers") or c.get("num_layers") or c["n_layer"],
        heads=heads,
        kv_heads=kv,
        intermediate=inter,
        vocab=c.get("vocab_size") or c["padded_vocab_size"],
        tied=bool(c.get("tie_word_embeddings", model_type in ("gemma", "gemma2", "gemma3_text"))),
        head_dim=c.get("head_dim") or c.get("kv_channels"),
        gated_mlp=model_type not in ("phi", "gpt_neox", "falcon", "gpt2", "bloom", "stablelm"),
        experts=experts,
        moe_intermediate=c.get("moe_intermediate_size"),
        shared_intermediate=c.get("shared_expert_intermediate_size") or 0,
        fp32_loss=model_type != "qwen",
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


def _normalise(name: str) -> str:
    base = name.rstrip("/").split("/")[-1].lower()
    for suffix in ("-instruct", "-chat", "-hf", "-base", "-it"):
        base = base.replace(suffix, "")
    return base.replace("meta-llama-3", "llama-3").replace("_", "-").replace("qwen-1-8b", "qwen-1_8b")


def from_table(name: str) -> Arch | None:
    base = _normalise(name)
    for key in sorted(TABLE, key=len, reverse=True):
        if base == key or base.startswith(key + "-") or base.startswith(key):
            h, l, a, kv, i, v, tied, hd, gated = TABLE[key]
            qwen_v1 = key.startswith("qwen-")
            return Arch(h, l, a, kv, i, v, tied, hd, gated, fp32_loss=not qwen_v1, name=key, source="built-in table")
    return None


def _hf_cache(name: str) -> Path | None:
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def load(model_name_or_path: str) -> Arch:
    """Facts for a local model folder, a model in the Hugging Face cache, or a popular architecture."""
    local = Path(os.path.expanduser(model_name_or_path)) / "config.json"
    for path, source in ((local, "config.json"), (_hf_cache(model_name_or_path), "Hugging Face cache")):
        if path is not None and path.is_file():
            try:
                return from_config(json.loads(path.read_text()), model_name_or_path, f"{source}: {path}")
            except (ValueError, KeyError, TypeError) as exc:
                raise UnknownModel(f"{path}: cannot read the architecture ({exc})") from None
    known = from_table(model_name_or_path)
    if known:
        return replace(known, source=f"built-in table ({known.name})")
    raise UnknownModel(
        f"{model_name_or_path}: no config.json found locally or in the Hugging Face cache, and not a known "
        "architecture; set model_name_or_path to a local model folder to estimate its memory"
    )
