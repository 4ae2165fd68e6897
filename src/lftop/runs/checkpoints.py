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


def own(events: list[dict], output_dir: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints a run's events say it wrote, found in its output_dir as it is now, by step.

    A run owns only these: another run's checkpoints in the same folder are never resumed from or named."""
    steps = {e.get("step") for e in events if e.get("event") == "checkpoint"}
    found = [(s, output_dir / f"checkpoint-{s}") for s in sorted(x for x in steps if type(x) is int and x >= 0)]
    return [(s, p) for s, p in found if (p / "trainer_state.json").is_file()]


def step_of(path: Path) -> int | None:
    """The global step a checkpoint was saved at (trainer_state.json), None when it is not a complete one."""
    import json

    try:
        state = json.loads((path / "trainer_state.json").read_bytes())
    except (OSError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if type(step) is int and step >= 0 else None


def holds_final_model(output_dir: Path) -> bool:
    return any((output_dir / name).exists() for name in FINAL_MODEL_FILES)
