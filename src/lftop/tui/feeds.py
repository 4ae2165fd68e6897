"""Background feeds: each a Sampler thread that reads the core and posts typed messages."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from threading import Lock

from lftop.gpu.nvml import Nvml
from lftop.gpu.sampler import Sampler, sample
from lftop.logs.follower import last_lines
from lftop.logs.history import RunLogs
from lftop.runs import engines
from lftop.runs.process import ProcessRef
from lftop.runs.rundir import RunDir, all_runs, runs_root
from lftop.runs.state import RunState
from lftop.runs.status import RunStatus, all_statuses
from lftop.tui.messages import Compared, Curves, GpuSampled, LogPolled, RunsPolled
from lftop.tui.watch import RunsWatch

TAIL_LINES = 2000
CATCH_UP = 32 << 20  # bytes of history read per poll, so the runs table keeps updating during a big log


class RunsFeed:
    """Polls every run's status and follows the selected run's logs, in one thread."""

    def __init__(self, app, home: Path, interval: float):
        self.app, self.home = app, home
        self.runs: list[tuple[str, ProcessRef]] = []  # read by the GPU feed for ownership
        self._logs: RunLogs | None = None
        self._logs_for: str | None = None
        self._lock = Lock()
        self._chosen: RunStatus | None = None
        self._outside: list[RunStatus] = []
        self._polls = -1
        self.slurm_jobs: list[tuple[str, str]] = []  # (run dir, job) of running Slurm runs: the GPU feed samples their nodes
        self.thread = Sampler(self._poll, self._deliver, interval, quick=self._quick)
        self.watch = RunsWatch(runs_root(home), self.thread.wake)

    EXTERNAL_EVERY = 5  # polls between scans of the process table for runs lftop did not start

    def _external(self) -> list[RunStatus]:
        """This user's llamafactory-cli / torchrun runs that lftop did not start, as rows (rescanned every few
        polls: reading every process's command line is the costliest read here)."""
        self._polls += 1
        if self._polls % self.EXTERNAL_EVERY == 0:
            from lftop.ops import external

            self._outside = [RunStatus(
                id=e.id, state=RunState.RUNNING, alive=True, process=e.root, step=e.step, total_steps=e.total_steps,
                loss=e.loss, checkpoints=[], output_dir=e.output_dir or "", log="", gpus=e.cuda_visible_devices,
                nproc=e.nproc, created=None, profile=e.config or "", external=True) for e in external.runs()]
        return self._outside

    def _poll(self) -> list:
        statuses = all_statuses(all_runs(self.home))
        recorded = {s.id for s in statuses}  # an external run lftop stopped has a record of the same id
        statuses += [e for e in self._external() if e.id not in recorded]
        with self._lock:
            self.runs = [(s.id, s.process) for s in statuses if s.process is not None]
            self.slurm_jobs = [(str(Path(s.log).parent), s.job) for s in statuses
                               if s.engine == "slurm" and s.job and s.alive and (s.detail or "").startswith("RUNNING")]
        messages: list = [RunsPolled(statuses)]
        self._chosen = next((s for s in statuses if s.id == self.app.selected_run), None)
        if self._chosen is not None and not self._chosen.external:
            self.watch.follow(self._chosen.output_dir)
            messages.append(self._follow(self._chosen))
        if self.app.marked:
            messages.append(self._compared(statuses))
        return messages

    def _quick(self) -> list:
        """A file event on the selected run's log: follow it only (the statuses wait for the interval)."""
        if self._chosen is None or self._chosen.id != self.app.selected_run:
            return self._poll()
        return [self._follow(self._chosen)]

    def stop(self) -> None:
        self.thread.stop()
        self.watch.stop()

    def _follow(self, run: RunStatus) -> LogPolled:
        """The selected run's curves and new log lines; a new selection shows the log's end at once
        and fills the history in over the following polls."""
        reset = self._logs_for != run.id
        if reset:
            self._logs = RunLogs(run.log, Path(run.output_dir) / "trainer_log.jsonl")
            self._logs_for = run.id
        was_behind = reset or self._logs.behind
        self._logs.poll(CATCH_UP)
        h = self._logs.history
        if self._logs.behind:  # history still loading: show the file's end once, then nothing old
            lines, clear = (last_lines(Path(run.log), TAIL_LINES), True) if reset else ([], False)
        else:  # caught up: a fresh view shows the end of what was read, later polls what is new
            lines, clear = [text for _, text in self._logs.new_lines][-TAIL_LINES:], was_behind
        names = h.metric_names()
        chart = self.app.chart_metric if self.app.chart_metric in names else "loss"
        loss = h.series("loss")
        curves = Curves(run.id, loss, h.series("lr"), h.series("eval_loss"), h.series("grad_norm"),
                        h.step, h.total, h.eta_s, [f"{f.kind}: {f.message}" for f in h.failures[-5:]],
                        chart, loss if chart == "loss" else h.series(chart), names, h.diverged_at)
        return LogPolled(curves, lines, clear)

    def _compared(self, statuses: list[RunStatus]) -> Compared:
        """The loss of every marked run by step (from its trainer_log.jsonl), for the chart's overlay."""
        from lftop.runs.compare import history

        marked = [s for s in statuses if s.id in self.app.marked and s.output_dir]
        return Compared({s.id: history(Path(s.output_dir)).loss for s in marked})

    def _deliver(self, messages) -> None:
        if isinstance(messages, Exception):
            return
        for message in messages:
            self.app.post_message(message)

    def process_refs(self) -> list[tuple[str, ProcessRef]]:
        with self._lock:
            return list(self.runs)

    def running_jobs(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.slurm_jobs)


class GpuFeed:
    """Samples NVML (real or simulated) and the host."""

    def __init__(self, app, runs: RunsFeed, home: Path, interval: float, source=None):
        self.app, self.runs_feed, self.home = app, runs, home
        self.nvml = Nvml()
        self.streams: dict[str, object] = {}  # Slurm job -> its nodes' GPU stream (one srun each, kept open)
        self.thread = Sampler(source or self._poll, self._deliver, interval)

    def _poll(self):
        local = sample(self.nvml, self.runs_feed.process_refs(), [self.home])
        self._record_peaks(local)
        nodes = self._nodes()
        return replace(local, nodes=nodes) if nodes else local

    def _record_peaks(self, s) -> None:
        """Each of this user's runs' largest NVML memory per GPU, kept in its run directory (`lftop show`)."""
        used: dict[str, dict[str, int]] = {}
        for d in s.gpus.devices:
            for p in d.processes:
                o = s.owners.get(p.pid)
                if o is not None and o.run and o.mine and p.used_bytes:
                    per_gpu = used.setdefault(o.run, {})
                    per_gpu[str(d.index)] = per_gpu.get(str(d.index), 0) + p.used_bytes
        if self.app.readonly:
            return
        for run_id, per_gpu in used.items():
            run = RunDir(runs_root(self.home) / run_id)
            try:
                if run.problem() is None:
                    run.record_nvml_peaks(per_gpu)
            except OSError:  # a full disk: the panel goes on, the peak is not kept
                continue

    def _nodes(self) -> dict[str, dict]:
        """The latest sample of every node of every running Slurm run; streams open and close with the jobs."""
        jobs = dict((job, run_dir) for run_dir, job in self.runs_feed.running_jobs())
        for job in [j for j, stream in self.streams.items() if j not in jobs or not stream.running]:
            self.streams.pop(job).close()  # ended, or its srun died: a new one opens while the job runs
        for job, run_dir in jobs.items():
            if job not in self.streams:
                stream = engines.get("slurm").gpu_stream(RunDir(Path(run_dir)), self.thread.interval)
                if stream is not None:
                    self.streams[job] = stream
        return {node: data for stream in self.streams.values() for node, data in stream.latest().items()}

    def stop(self) -> None:
        """Stop sampling, then close every node stream (after the last poll: none is left open)."""
        self.thread.stop()
        self.thread.join(self.thread.interval + 5)
        for stream in self.streams.values():
            stream.close()

    def _deliver(self, result) -> None:
        if not isinstance(result, Exception):
            self.app.post_message(GpuSampled(result))
