"""Stalls: a running run that logs no new step for too long. Judged by the run's own supervisor (a Slurm run's:
its batch script's `watch` step on the head node), so it is noticed (and notified) with no lftop open.

The threshold is `[launch] stall_after` seconds, else the larger of 10 median step times and 2 minutes.
Before the first step, and while the log's last line says the run is loading, tokenizing, saving or
evaluating, silence of the log is judged instead of steps.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

from lftop.logs.follower import last_lines
from lftop.logs.jsonl import tail_progress
from lftop.runs import notify
from lftop.runs.rundir import RunDir

FLOOR = 120.0
CHECK = 5.0  # seconds between checks (or stall_after, when shorter)
BUSY = re.compile(r"(?i)loading|tokeniz|running tokenizer|converting format|saving|checkpoint|evaluat|\beval\b|"
                  r"map|filter|download|generating")


class StallWatch:
    """Fed by the supervisor every few seconds; records `stalled` (and `stall cleared`) events."""

    def __init__(self, run: RunDir, output_dir: Path, stall_after: float | None):
        self.run, self.output_dir, self.stall_after = run, output_dir, stall_after
        self.step: int | None = None
        self.started = self.step_at = time.time()
        self.intervals: list[float] = []
        self.stalled = False

    @classmethod
    def of(cls, run: RunDir) -> StallWatch:
        """The watch for `run`, with the stall_after its launch recorded in run.json."""
        meta = run.meta()
        launch = meta.get("launch") if isinstance(meta.get("launch"), dict) else {}
        stall_after = launch.get("stall_after") if isinstance(launch.get("stall_after"), (int, float)) else None
        return cls(run, Path(meta["output_dir"]), stall_after)

    @property
    def period(self) -> float:
        return min(CHECK, self.stall_after or CHECK)

    def tick(self) -> None:
        """One check; the notify command hears of a run that has just stalled."""
        if self.check():
            notify.send(self.run, "stalled", step=self.step, state="running",
                        reason=f"no new step for {self.threshold():.0f} s")

    def threshold(self) -> float:
        if self.stall_after:
            return self.stall_after
        median = statistics.median(self.intervals[-50:]) if self.intervals else 0.0
        return max(10 * median, FLOOR)

    def _log_silence(self, now: float) -> tuple[float, bool]:
        """Seconds since the log last grew (this watch's start at the latest: a resumed run's log ends in its last
        attempt's lines, written before it waited to start again), and whether its last line says the run is busy
        between steps."""
        try:
            mtime = self.run.log.stat().st_mtime
        except OSError:
            return now - self.step_at, False
        tail = [s for line in last_lines(self.run.log, 3, window=8192) for s in line.split("\r") if s.strip()]
        return now - max(mtime, self.started), bool(tail) and bool(BUSY.search(tail[-1]))

    def check(self, now: float | None = None) -> bool | None:
        """True when the run has just stalled, False when it has just recovered, None when nothing changed."""
        now = time.time() if now is None else now
        step = tail_progress(self.output_dir / "trainer_log.jsonl").step
        if step is not None and step != self.step:
            if self.step is not None:
                self.intervals.append((now - self.step_at) / max(1, step - self.step))
            self.step, self.step_at = step, now
            if self.stalled:
                self.stalled = False
                self.run.event("stall cleared", step=step)
                return False
            return None
        silence, busy = self._log_silence(now)
        quiet = silence if (self.step is None or busy) else now - self.step_at
        if not self.stalled and quiet > self.threshold():
            self.stalled = True
            self.run.event("stalled", step=self.step, seconds=round(now - self.step_at, 1),
                           last_step_time=self.step_at, threshold=self.threshold())
            return True
        return None
