"""A tiny Llama and a toy alpaca dataset, built locally (no network) for the demo and the tests.

`build(directory)` is idempotent and safe to call from several processes at once: it builds into a
temporary folder and renames it into place. Needs transformers and tokenizers (the `train` extra).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
DATASET = "toy_alpaca"
TEMPLATE = "default"


@dataclass(frozen=True)
class Tiny:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def data(self) -> Path:
        return self.root / "data"


def _examples(count: int = 96) -> list[dict[str, str]]:
    rng = random.Random(0)
    rows = []
    for i in range(count):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        kind = i % 3
        if kind == 0:
            rows.append({"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a} plus {b} is {a + b}."})
        elif kind == 1:
            rows.append({"instruction": "Repeat the word.", "input": f"word{a}", "output": f"word{a} word{a}"})
        else:
            rows.append({"instruction": f"Is {a} larger than {b}?", "input": "", "output": "yes" if a > b else "no"})
    return rows


def _write_model(target: Path, corpus: list[str]) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.save_pretrained(target)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)


def build(directory: str | os.PathLike[str]) -> Tiny:
    """Build the tiny model and dataset into `directory` unless they are already there."""
    tiny = Tiny(Path(directory))
    marker = tiny.root / "lftop-tiny.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return tiny
    tiny.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=tiny.root.parent))
    try:
        rows = _examples()
        (staging / "data").mkdir()
        (staging / "data" / f"{DATASET}.json").write_text(json.dumps(rows, indent=1))
        (staging / "data" / "dataset_info.json").write_text(json.dumps({DATASET: {"file_name": f"{DATASET}.json"}}))
        corpus = [" ".join(r.values()) for r in rows] + ["Human: Assistant: \n"]
        _write_model(staging / "model", corpus)
        (staging / "lftop-tiny.json").write_text(json.dumps({"version": VERSION, "dataset": DATASET, "template": TEMPLATE}))
        if tiny.root.exists():
            shutil.rmtree(tiny.root, ignore_errors=True)
        try:
            staging.rename(tiny.root)
        except OSError:  # another process finished first
            if not marker.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tiny
