"""Typed messages the feed threads post to the app; the main thread only renders them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from lftop.estimate.advice import Suggestion
    from lftop.gpu.sampler import Sample
    from lftop.ops import Plan
    from lftop.runs.status import RunStatus


class GpuSampled(Message):
    def __init__(self, sample: Sample) -> None:
        super().__init__()
        self.sample = sample


class RunsPolled(Message):
    def __init__(self, runs: list[RunStatus]) -> None:
        super().__init__()
        self.runs = runs


@dataclass
class Curves:
    """What the selected run's logs say, copied out of the feed thread."""

    run: str
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    step: int | None = None
    total: int | None = None
    eta_s: float | None = None
    failures: list[str] = field(default_factory=list)
    chart: str = "loss"  # the metric the chart draws (the chart key cycles through `names`)
    chart_values: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every metric the run's logs hold
    diverged_at: int | None = None  # the first step whose loss or grad norm is nan or infinite

    def __post_init__(self) -> None:
        if self.chart == "loss" and not self.chart_values:
            self.chart_values = self.loss


class Compared(Message):
    """The loss by step of every run marked for comparison (the chart overlays them, with a legend)."""

    def __init__(self, losses: dict[str, dict[int, float]]) -> None:
        super().__init__()
        self.losses = losses


class LogPolled(Message):
    def __init__(self, curves: Curves, lines: list[str], reset: bool) -> None:
        super().__init__()
        self.curves, self.lines, self.reset = curves, lines, reset


class ActionDone(Message):
    """A control action finished in a worker thread: say how it went."""

    def __init__(self, text: str, severity: str = "information") -> None:
        super().__init__()
        self.text, self.severity = text, severity


class Launched(ActionDone):
    """A run was launched from the app: the runs table selects it when it appears."""

    def __init__(self, run: str) -> None:
        super().__init__(f"launched {run}")
        self.run = run


class FixFound(ActionDone):
    """After an OOM, the change lftop would apply with the fix key."""

    def __init__(self, run: str, fix: Suggestion) -> None:
        setting = ", ".join(f"{k}={v}" for k, v in fix.set.items())
        super().__init__(f"{run}: press f to resume from the last checkpoint with {setting} "
                         f"({fix.per_gpu_gib:.1f} GiB predicted)", "warning")
        self.run, self.fix = run, fix


class LaunchBlocked(ActionDone):
    """The profile's output_dir holds an earlier run's checkpoints: the app asks what to do."""

    def __init__(self, plan: Plan, owner: str | None, text: str) -> None:
        super().__init__(text, "warning")
        self.plan, self.owner = plan, owner
