"""Parse LLaMA-Factory's trainer_log.jsonl (written by its LogCallback on rank 0)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lftop.logs.records import Eval, Fact, Point, Progress, Record
from lftop.logs.tail import read_tail

_METRICS = ("reward", "accuracy", "throughput")  # LogCallback's other values of a step (PPO, DPO, tokens/s)


def clock_seconds(text: object) -> float | None:
    """Seconds of an H:MM:SS or MM:SS clock, as tqdm and LogCallback print them; None for "?" or garbage."""
    if not isinstance(text, str):
        return None
    try:
        seconds = 0.0
        for part in text.split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    except ValueError:
        return None


def parse_line(number: int, text: str, alone: bool = False) -> list[Record]:
    """Records of line `number`; garbage yields none. `alone`: the file is read by itself (`lftop scan`), so a
    row without current_steps (LLaMA-Factory's LogCallback before it recorded steps, 2023) is numbered by its
    line; beside a training.log, whose frames give the steps, such rows are left out."""
    try:
        row = json.loads(text)
    except ValueError:
        return []
    if not isinstance(row, dict):
        return []
    step, out = row.get("current_steps"), []
    if not isinstance(step, int):
        if not alone:
            return []
        step = number
    total = row.get("total_steps")
    if isinstance(row.get("loss"), (int, float)):
        lr = row.get("lr", row.get("learning_rate"))  # "learning_rate" before LLaMA-Factory 0.9
        metrics = {k: float(row[k]) for k in _METRICS if isinstance(row.get(k), (int, float))}
        out.append(Point(step, float(row["loss"]), lr, row.get("grad_norm"), row.get("epoch"), number, metrics or None))
    if isinstance(row.get("eval_loss"), (int, float)):
        out.append(Eval(step, float(row["eval_loss"]), row.get("epoch"), number))
    if isinstance(total, int):
        out.append(Progress(step, total, None, None, number))
    for key in ("vram_allocated", "vram_reserved"):
        if key in row:
            out.append(Fact(key, str(row[key]), number))
    elapsed = clock_seconds(row.get("elapsed_time"))
    if elapsed is not None:
        out.append(Fact("elapsed_s", str(elapsed), number))
    return out


@dataclass(frozen=True)
class TailProgress:
    step: int | None = None
    total: int | None = None
    loss: float | None = None


def tail_progress(path: Path, window: int = 65536) -> TailProgress:
    """Step, total and last loss from the end of a trainer_log.jsonl, reading at most `window` bytes."""
    data = read_tail(path, window)
    if data is None:
        return TailProgress()
    lines = data.decode("utf-8", "replace").splitlines()
    step = total = loss = None
    for text in reversed(lines):
        for record in parse_line(0, text):
            if isinstance(record, Progress) and step is None:
                step, total = record.step, record.total
            if isinstance(record, Point) and loss is None:
                loss = record.loss
        if step is not None and loss is not None:
            break
    return TailProgress(step, total, loss)
