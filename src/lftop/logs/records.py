"""Typed records found in training logs; each carries the line number it came from (1-based).

Point and Progress are NamedTuples; the points the C scanner (lftop.logs._fastlog) reads come as Rows,
columns of numbers without an object per point (a long log holds millions). The rare kinds are frozen
dataclasses.
Values are floats as the log printed them, nan and inf included (a diverging run prints nan).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import NamedTuple


class Point(NamedTuple):
    """One training log event: a step's loss, learning rate, grad norm and epoch (None where unknown).

    `metrics` holds every other numeric value of the event under the name the log gave it
    (DPO's `rewards/accuracies`, PPO's `reward`, `num_input_tokens_seen`, ...), or None when it has none.
    """

    step: int | None
    loss: float | None
    lr: float | None
    grad_norm: float | None
    epoch: float | None
    line: int
    metrics: dict[str, float] | None = None


class Rows(NamedTuple):
    """Points in a row, as the C scanner packs them: steps and line numbers (int64), and loss, lr,
    grad_norm and epoch (four float64 a point); none has other metrics or a missing value."""

    steps: bytes
    lines: bytes
    values: bytes
    increasing: bool  # each step above the one before it
    finite: bool  # every loss and grad norm is finite

    def points(self) -> list[Point]:
        values = array("d", self.values)
        return [Point(step, *values[4 * i:4 * i + 4], line)
                for i, (step, line) in enumerate(zip(array("q", self.steps), array("q", self.lines), strict=True))]


def flat(records: list[Record]) -> list[Record]:
    """The records with each Rows as its Points."""
    return [p for r in records for p in (r.points() if type(r) is Rows else (r,))]


@dataclass(frozen=True)
class Eval:
    """An evaluation: its loss, and its other numeric values by name (`eval_rewards/accuracies`, `eval_accuracy`)."""

    step: int | None
    eval_loss: float
    epoch: float | None
    line: int
    metrics: dict[str, float] | None = None


class Progress(NamedTuple):
    step: int
    total: int
    rate: float | None  # steps per second
    eta_s: float | None
    line: int


@dataclass(frozen=True)
class Failure:
    kind: str  # oom | nccl | traceback | killed | exit
    message: str
    line: int


@dataclass(frozen=True)
class Fact:
    """A fact LLaMA-Factory or transformers states once: world_size, device, trainable_params, resumed_from, ..."""

    key: str
    value: str
    line: int


@dataclass(frozen=True)
class Summary:
    """The end-of-training metrics (the `***** train metrics *****` block or the final metric dict)."""

    metrics: dict
    line: int


Record = Point | Rows | Eval | Progress | Failure | Fact | Summary
