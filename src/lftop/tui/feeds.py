"""Background feeds: each a Sampler thread that reads the core and posts typed messages."""

from __future__ import annotations

from pathlib import Path
from threading import Lock

from lftop.gpu.nvml import Nvml
from lftop.gpu.sampler import Sampler, sample
from lftop.logs.history import RunLogs
from lftop.runs.process import ProcessRef
from lftop.runs.rundir import all_runs
from lftop.runs.status import RunStatus, status
from lftop.tui.messages import Curves, GpuSampled, LogPolled, RunsPolled

TAIL_LINES = 2000


class RunsFeed:
    """Polls every run's status and follows the selected run's logs, in one thread."""

    def __init__(self, app, home: Path, interval: float):
        self.app, self.home = app, home
        self.selected: str | None = None
        self.runs: list[tuple[str, ProcessRef]] = []  # read by the GPU feed for ownership
        self._logs: RunLogs | None = None
        self._logs_for: str | None = None
        self._lock = Lock()
        self.thread = Sampler(self._poll, self._deliver, interval)

    def _poll(self) -> list:
        statuses = [status(r) for r in all_runs(self.home)]
        with self._lock:
            self.runs = [(s.id, s.process) for s in statuses if s.process is not None]
        messages: list = [RunsPolled(statuses)]
        chosen = next((s for s in statuses if s.id == self.selected), None)
        if chosen is not None:
            messages.append(self._follow(chosen))
        return messages

    def _follow(self, run: RunStatus) -> LogPolled:
        reset = self._logs_for != run.id
        if reset:
            self._logs = RunLogs(run.log, Path(run.output_dir) / "trainer_log.jsonl")
            self._logs_for = run.id
        self._logs.poll()
        h = self._logs.history
        lines = [text for _, text in self._logs.new_lines][-TAIL_LINES:]
        curves = Curves(run.id, h.series("loss"), h.series("lr"), h.series("eval_loss"), h.series("grad_norm"),
                        h.step, h.total, h.eta_s, [f"{f.kind}: {f.message}" for f in h.failures[-5:]])
        return LogPolled(curves, lines, reset)

    def _deliver(self, messages) -> None:
        if isinstance(messages, Exception):
            return
        for message in messages:
            self.app.post_message(message)

    def process_refs(self) -> list[tuple[str, ProcessRef]]:
        with self._lock:
            return list(self.runs)


class GpuFeed:
    """Samples NVML (real or simulated) and the host."""

    def __init__(self, app, runs: RunsFeed, home: Path, interval: float, source=None):
        self.app, self.runs_feed, self.home = app, runs, home
        self.nvml = Nvml()
        self.thread = Sampler(source or self._poll, self._deliver, interval)

    def _poll(self):
        return sample(self.nvml, self.runs_feed.process_refs(), [self.home])

    def _deliver(self, result) -> None:
        if not isinstance(result, Exception):
            self.app.post_message(GpuSampled(result))
