"""One history per run from training.log and trainer_log.jsonl: one series per metric, nothing twice.

Points are keyed by step, so a step logged in both files, or logged again after resuming from an
earlier checkpoint, appears once (the later report wins). trainer_log.jsonl is authoritative for loss,
learning rate and epoch; training.log adds the grad norm and the other metrics, which the JSONL file
lacks. The ETA comes from the step rate, never from the JSONL `remaining_time` (wrong after a resume).
A run is diverging (`diverged_at`) while a point it holds has a loss or grad norm that is nan or infinite.
"""

from __future__ import annotations

import math
import os
from array import array
from dataclasses import dataclass, field

from lftop.logs import jsonl
from lftop.logs.follower import BLOCK, Follower
from lftop.logs.parse import LogParser
from lftop.logs.points import FIELDS as _FIELDS
from lftop.logs.points import Points
from lftop.logs.records import Eval, Fact, Failure, Point, Progress, Record, Rows, Summary

_INF = math.inf


@dataclass
class History:
    points: Points = field(default_factory=Points)
    evals: dict[int, Eval] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    summary: dict | None = None
    step: int | None = None
    total: int | None = None
    rate: float | None = None  # steps per second
    _nonfinite: set[int] = field(default_factory=set)  # steps whose point has a nan or infinite loss or grad norm
    _names: set[str] = field(default_factory=set)  # the other metrics points and evaluations have given values of
    _jsonl_steps: set[int] = field(default_factory=set)
    _segment: list[tuple[float, int]] = field(default_factory=list)  # (elapsed_s, step) of this process

    @property
    def diverged_at(self) -> int | None:
        """The first step whose loss or grad norm is nan or infinite; None while every one is finite."""
        return min(self._nonfinite) if self._nonfinite else None

    def add_log(self, records: list[Record]) -> None:
        """Records from training.log (a loop kept tight: a long log gives millions of points)."""
        points, jsonl_steps, nonfinite, names = self.points, self._jsonl_steps, self._nonfinite, self._names
        for r in records:
            if type(r) is Rows:
                steps = array("q", r.steps) if jsonl_steps or nonfinite else ()
                if r.finite and jsonl_steps.isdisjoint(steps) and nonfinite.isdisjoint(steps):
                    points.add_rows(r)
                else:  # a step to merge with the JSONL's, or a divergence to follow: point by point
                    self.add_log(r.points())
                continue
            if type(r) is not Point:
                self._common(r, from_log=True)
                continue
            step = r.step
            if step is None:
                continue
            if jsonl_steps and step in jsonl_steps:  # the JSONL point stands; the log adds what it lacks
                held = points[step]
                r = held._replace(grad_norm=held.grad_norm if held.grad_norm is not None else r.grad_norm,
                                  metrics={**(r.metrics or {}), **(held.metrics or {})} or None)
            points.add(r)
            loss, grad = r.loss, r.grad_norm
            if (loss is not None and not -_INF < loss < _INF) or (grad is not None and not -_INF < grad < _INF):
                nonfinite.add(step)  # nan fails both comparisons
            elif nonfinite:
                nonfinite.discard(step)
            if r.metrics:
                names.update(r.metrics)

    def add_jsonl(self, records: list[Record]) -> None:
        """Records from trainer_log.jsonl."""
        for r in records:
            if isinstance(r, Point):
                held = self.points.get(r.step)  # grad norm and metrics come from the log's report of the step
                grad, metrics = (held.grad_norm, held.metrics) if held is not None else (None, None)
                self._jsonl_steps.discard(r.step)  # this report wins over an earlier one
                self.add_log([r._replace(grad_norm=grad, metrics={**(metrics or {}), **(r.metrics or {})} or None)])
                self._jsonl_steps.add(r.step)
            elif isinstance(r, Fact) and r.key == "elapsed_s":
                self._timing(float(r.value))
            else:
                self._common(r, from_log=False)

    def _timing(self, elapsed: float) -> None:
        if self._segment and elapsed < self._segment[-1][0]:
            self._segment = []  # a new process (resume): elapsed_time restarted
        if self.step is not None:
            self._segment.append((elapsed, self.step))
            (t0, s0), (t1, s1) = self._segment[0], self._segment[-1]
            if t1 > t0 and s1 > s0:
                self.rate = (s1 - s0) / (t1 - t0)

    def _common(self, r: Record, from_log: bool) -> None:
        if isinstance(r, Eval):
            if r.step is not None:
                self.evals[r.step] = r
                self._names.update(r.metrics or ())
        elif isinstance(r, Progress):
            self.step, self.total = r.step, r.total
            if from_log and r.rate:
                self.rate = r.rate
        elif isinstance(r, Failure):
            self.failures.append(r)
        elif isinstance(r, Fact):
            self.facts[r.key] = r.value
        elif isinstance(r, Summary):
            self.summary = r.metrics

    def series(self, metric: str) -> list[float]:
        """Values of a metric by step: `loss`, `lr`, `grad_norm`, `epoch`, `eval_loss`, or any name in
        `metric_names()` (`rewards/accuracies`, `eval_rewards/margins`, ...); nan stays nan."""
        if metric == "eval_loss":
            return [self.evals[s].eval_loss for s in sorted(self.evals)]
        if metric in _FIELDS:
            return self.points.column(metric)
        if metric.startswith("eval_"):
            values = ((self.evals[s].metrics or {}).get(metric) for s in sorted(self.evals))
        else:
            values = ((p.metrics or {}).get(metric) for p in self.points.values())
        return [v for v in values if v is not None]

    def metric_names(self) -> list[str]:
        """Every metric the history holds a value of: the Point fields first, then the others by name."""
        points = self.points.values()
        first = [f for f in _FIELDS if any(getattr(p, f) is not None for p in points)]
        return first + (["eval_loss"] if self.evals else []) + sorted(self._names)

    def last(self) -> Point | None:
        return self.points.last()

    @property
    def eta_s(self) -> float | None:
        if self.step is None or not self.total or not self.rate:
            return None
        return max(0.0, (self.total - self.step) / self.rate)


class RunLogs:
    """Follows a run's training.log and trainer_log.jsonl into one History; `poll()` from a thread."""

    def __init__(self, log: os.PathLike[str] | str, trainer_log: os.PathLike[str] | str):
        self.history = History()
        self._log = Follower(log)
        self._jsonl = Follower(trainer_log)
        self._parser = LogParser()
        self._log_resets = 0
        self.new_lines: list[tuple[int, str]] = []

    def poll(self, limit: int | None = None, keep_lines: int = 2000) -> bool:
        """Read what both files gained, at most about `limit` bytes of training.log; True when anything
        arrived. `new_lines` keeps the last lines read."""
        budget, lines, got = limit, [], False
        while True:
            start = self._log.offset
            block = self._log.read_block(BLOCK if budget is None else min(BLOCK, budget))
            if self._log.resets != self._log_resets:
                self._log_resets, self._parser, lines = self._log.resets, LogParser(), []
            if block.count:
                got = True
                self.history.add_log(self._parser.feed_block(block.first, block.data))
                lines = (lines + block.tail(keep_lines))[-keep_lines:]
            if budget is not None:
                budget -= self._log.offset - start if self._log.offset >= start else self._log.offset
            if not self._log.behind or (budget is not None and budget <= 0):
                break
        rows = self._jsonl.read(limit)
        for number, text in rows:
            self.history.add_jsonl(jsonl.parse_line(number, text))
        self.new_lines = lines
        return bool(got or rows)

    @property
    def behind(self) -> bool:
        """Still reading the history of a large log (each poll reads at most its limit)."""
        return self._log.behind or self._jsonl.behind
