"""Typed records found in training logs; each carries the line number it came from (1-based).

Point and Progress, of which a long log holds millions, are NamedTuples: the C scanner
(lftop.logs._fastlog) builds them as cheaply as tuples. The rare kinds are frozen dataclasses.
Values are floats as the log printed them, nan and inf included (a diverging run prints nan).
"""

from __future__ import annotations

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


Record = Point | Eval | Progress | Failure | Fact | Summary
