"""Checkpoints in an output_dir; one counts only when its trainer_state.json exists (written last)."""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^checkpoint-(\d+)$")
FINAL_MODEL_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def all_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint folder, complete or not, by step."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def complete(output_dir: Path) -> list[tuple[int, Path]]:
    return [(step, p) for step, p in all_checkpoints(output_dir) if (p / "trainer_state.json").is_file()]


def newest_complete(output_dir: Path) -> tuple[int, Path] | None:
    done = complete(output_dir)
    return done[-1] if done else None


def holds_final_model(output_dir: Path) -> bool:
    return any((output_dir / name).exists() for name in FINAL_MODEL_FILES)
