"""lftop's app: GPUs, runs, the selected run's loss and log on one screen; launch, pause, resume, stop."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Static

from lftop.runs.state import ENDED, RunState
from lftop.tui import settings
from lftop.tui.messages import (
    ActionDone,
    Compared,
    Curves,
    FixFound,
    GpuSampled,
    LaunchBlocked,
    Launched,
    LogPolled,
    RunsPolled,
)
from lftop.tui.themes import load_themes
from lftop.tui.widgets import CurvePanel, GpuPanel, LogTail, RunsTable

if TYPE_CHECKING:
    from lftop.runs.status import RunStatus
    from lftop.tui.feeds import GpuFeed, RunsFeed

# What the first frame does not need is imported when it is: the feeds after the first frame, the
# screens when one opens, lftop.ops in the worker that acts (see benchmarks/tui_cost.py).
# Workers never write the app's or a widget's state: they post a message, and its handler (main thread) does.

MIN_SIZE = (80, 24)


class LftopApp(App):
    CSS_PATH = "lftop.tcss"
    TITLE = "lftop"
    BINDINGS = [
        Binding("l", "launch", "Launch", id="lftop.launch"),
        Binding("p", "pause", "Pause", id="lftop.pause"),
        Binding("r", "resume", "Resume", id="lftop.resume"),
        Binding("s", "stop", "Stop", id="lftop.stop"),
        Binding("f", "fix", "Fix OOM", id="lftop.fix"),
        Binding("c", "cycle_chart", "Chart", id="lftop.chart", show=False),
        Binding("e", "follow_log", "Follow log", id="lftop.follow", show=False),
        Binding("m", "mark", "Mark to compare", id="lftop.mark", show=False),
        Binding("enter", "open", "Open", id="lftop.open", show=False),
        Binding("slash", "filter", "Filter", id="lftop.filter"),
        Binding("escape", "back", "Back", id="lftop.back", show=False),
        Binding("question_mark", "help", "Help", id="lftop.help"),
        Binding("q", "quit", "Quit", id="lftop.quit"),
    ]

    def __init__(self, home: Path, interval: float = 0.0, readonly: bool = False, theme: str | None = None,
                 select: str | None = None, gpu_source=None) -> None:
        """`interval` and `theme` left out: config.toml's, else 1 s and lftop-dark.

        `gpu_source`, a callable returning a Sample, replaces live sampling (fixed frames for snapshots)."""
        super().__init__()
        self.home = home
        for t in load_themes():
            self.register_theme(t)
        ids = [b.id for b in self.BINDINGS if isinstance(b, Binding) and b.id]
        chosen = settings.load(home, interval, theme, list(self.available_themes), ids)
        self.problems = chosen.problems  # printed now, shown as notifications once the app is up
        self.interval, self.theme = chosen.interval, chosen.theme
        self.readonly = readonly
        if chosen.keymap:
            self.set_keymap(chosen.keymap)
        for problem in self.problems:
            print(f"lftop: {problem}", file=sys.stderr)
        self.runs: list[RunStatus] = []
        self.curves: Curves | None = None
        self.lines: deque[str] = deque(maxlen=2000)
        self.etas: dict[str, float | None] = {}
        self.fixes: dict[str, object] = {}  # run id -> Suggestion after an OOM
        self._states: dict[str, str] = {}
        self._needle = ""
        self._select = select
        self.selected_run = select  # read by the runs feed: whose log to follow
        self.chart_metric = "loss"  # read by the runs feed: which metric the chart draws
        self.marked: frozenset[str] = frozenset()  # read by the runs feed: runs whose loss curves are compared
        self._heard: set[tuple[str, str]] = set()  # (run, alert) already rung for
        self.gpu_panel, self.runs_table = GpuPanel(id="gpus"), RunsTable(id="runs")
        self.curve_panel, self.log_tail = CurvePanel(id="curves"), LogTail(id="log")
        self._gpu_source = gpu_source
        self.feeds: tuple[RunsFeed, GpuFeed] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="main"):
            yield self.gpu_panel
            with Horizontal(id="middle"):
                yield self.runs_table
                yield self.curve_panel
            yield self.log_tail
        yield Static(f"terminal too small: lftop needs {MIN_SIZE[0]}×{MIN_SIZE[1]}", id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        self.runs_table.focus()
        for problem in self.problems:
            self.notify(problem, title="Settings", severity="warning", timeout=20)
        self._fit(self.size.width, self.size.height)
        self.call_after_refresh(self._start_feeds)  # the first frame first, then the threads
        try:
            import asyncio

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._terminal_gone)  # SSH dropped, tmux pane killed
            loop.add_signal_handler(signal.SIGTERM, self.exit)  # `kill`: restore the terminal, then leave
        except (NotImplementedError, RuntimeError):
            pass

    def _terminal_gone(self) -> None:
        """SIGHUP: nothing can be drawn or restored, and Textual's shutdown can block for ever writing to the
        vanished terminal (its output thread dies on the first failed write). So let an action in flight (a
        launch, a pause) finish, then leave at once: runs are processes of their own with their state on disk."""

        def leave() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(w.group == "control" and w.is_running for w in list(self.workers)):
                time.sleep(0.1)
            os._exit(0)

        threading.Thread(target=leave, name="lftop-hangup", daemon=True).start()

    def _start_feeds(self) -> None:
        if not gc.isenabled():  # `lftop` held collections back until the first frame (cli.open_app)
            gc.freeze()  # what start-up made is permanent: later collections skip it
            gc.enable()
        from lftop.tui.feeds import GpuFeed, RunsFeed

        runs = RunsFeed(self, self.home, self.interval)
        self.feeds = (runs, GpuFeed(self, runs, self.home, self.interval, self._gpu_source))
        for feed in self.feeds:
            feed.thread.start()

    def on_unmount(self) -> None:
        if self.feeds:
            for feed in self.feeds:
                feed.stop()

    def on_resize(self, event) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        self.query_one("#main").display = not small
        self.query_one("#too-small").display = small
        self.set_class(height < 40, "compact")
        self.set_class(width < 120, "narrow")

    # -- messages from the feeds -----------------------------------------------------------------
    def _dashboard_gone(self) -> bool:
        """True while the dashboard is not in the DOM (before compose, during exit): feed messages wait."""
        return not self.runs_table.is_attached

    def on_gpu_sampled(self, message: GpuSampled) -> None:
        from lftop.gpu.sampler import record

        if self._dashboard_gone():
            return
        record(self.gpu_panel.rings, message.sample)
        self.gpu_panel.show(message.sample)

    def on_runs_polled(self, message: RunsPolled) -> None:
        from lftop.ops import hangs

        if self._dashboard_gone():
            return
        self.runs = message.runs
        table = self.runs_table
        table.show(self.runs, self.etas, self._needle)
        if self._select and self._select in [r.id for r in self.runs]:
            table.move_cursor(row=[str(k.value) for k in table.rows].index(self._select))
            table.scroll_to(x=0, animate=False, immediate=True)
            self._select = None
        self.selected_run = table.selected()
        for run in self.runs:
            before = self._states.get(run.id)
            self._states[run.id] = run.state
            if before is not None and before not in ENDED and run.state in ENDED:
                self._announce(run)
            for alert in run.alerts:
                self._alert(run.id, alert.split(":")[0], f"{run.id}: {alert}")
            sample = self.gpu_panel.sample
            if run.stalled and sample is not None and (why := hangs.hint(run, sample.gpus)):
                self._alert(run.id, "hang", f"{run.id}: {why}")

    def _alert(self, run: str, kind: str, text: str) -> None:
        """Ring the bell and say it, once per run and kind of alert (stalled, memory, diverging)."""
        if (run, kind) in self._heard:
            return
        self._heard.add((run, kind))
        self.bell()
        self.notify(text, title="Attention", severity="warning", timeout=30)

    def _announce(self, run: RunStatus) -> None:
        if run.state == RunState.PAUSED:
            self.notify(f"{run.id} paused at checkpoint-{run.checkpoints[-1] if run.checkpoints else '?'}")
            return
        if run.state == RunState.STOPPED:
            return
        self.bell()
        if run.state == RunState.COMPLETED:
            self.notify(f"{run.id} completed", title="Run finished")
        elif run.failure and run.failure.get("kind") == "oom":
            self.notify(f"{run.id} ran out of GPU memory: {run.failure.get('message', '')}", title="OOM",
                        severity="error", timeout=30)
            self.suggest_fix(run)
        else:
            why = (run.failure or {}).get("message") or (run.log_tail[-1] if run.log_tail else "")
            self.notify(f"{run.id} {run.state}: {why}", title="Run stopped", severity="error", timeout=20)

    def on_log_polled(self, message: LogPolled) -> None:
        if self._dashboard_gone():
            return
        log = self.log_tail
        if message.reset:
            log.clear()
            self.lines.clear()
        self.curves = message.curves
        self.etas[message.curves.run] = message.curves.eta_s
        if message.curves.diverged_at is not None:
            self._alert(message.curves.run, "diverging",
                        f"{message.curves.run} is diverging: loss or grad_norm is nan/inf from step {message.curves.diverged_at}")
        self.lines.extend(message.lines)
        self.curve_panel.show(message.curves)
        log.add(message.lines)
        from lftop.tui.screens import RunScreen

        if isinstance(self.screen, RunScreen):
            self.screen.update(message.curves, message.lines)

    def on_compared(self, message: Compared) -> None:
        if not self._dashboard_gone():
            self.curve_panel.compare(message.losses if len(self.marked) >= 2 else {})

    def action_mark(self) -> None:
        """Mark or unmark the selected run; two or more marked runs share the chart, a legend naming each."""
        run = self._selected()
        if run is None:
            return self._refuse("no run selected")
        self.marked = self.marked ^ {run.id}
        self.runs_table.marked = self.marked
        self.runs_table.show(self.runs, self.etas, self._needle)
        if len(self.marked) < 2:
            self.curve_panel.compare({})
        self.notify(f"{len(self.marked)} run(s) marked" + ("" if len(self.marked) >= 2 else ": mark another to compare"),
                    timeout=3)
        if self.feeds:
            self.feeds[0].thread.wake()

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity=message.severity)

    def on_launched(self, message: Launched) -> None:
        self._select = message.run
        self.notify(message.text)

    def on_launch_blocked(self, message: LaunchBlocked) -> None:
        """The output_dir holds an earlier run's work: resume that run, start fresh, or cancel."""
        from lftop.tui.screens import ChoiceScreen

        owner, plan = message.owner, message.plan
        choices = [("r", f"resume {owner}")] if owner else []
        choices += [("f", "start fresh (older files set aside)"), ("c", "cancel")]

        def chosen(key: str | None) -> None:
            earlier = next((r for r in self.runs if r.id == owner), None)
            if key == "r" and earlier is not None and earlier.state == RunState.COMPLETED:
                self._ask_continue(earlier)  # a completed run trains on past its end
            elif key == "r" and owner:
                self.control("resume", owner)
            elif key == "f":
                self.launch_plan(plan, fresh=True)

        self.push_screen(ChoiceScreen(message.text, choices), chosen)

    def on_fix_found(self, message: FixFound) -> None:
        self.fixes[message.run] = message.fix
        self.notify(message.text, severity=message.severity)

    def on_data_table_row_highlighted(self, event: RunsTable.RowHighlighted) -> None:
        chosen = str(event.row_key.value) if event.row_key else None
        if chosen != self.selected_run and self.feeds:
            self.feeds[0].thread.wake()  # its log at once, not at the next interval
        self.selected_run = chosen

    def on_data_table_row_selected(self, event: RunsTable.RowSelected) -> None:
        self.action_open()

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Launch a run", "pick a profile, check its memory estimate, launch", self.action_launch)
        yield SystemCommand("Pause the selected run", "checkpoint at the next step, then free the GPUs", self.action_pause)
        yield SystemCommand("Resume the selected run", "from its newest complete checkpoint", self.action_resume)
        yield SystemCommand("Stop the selected run", "kill its process tree (asks first)", self.action_stop)
        yield SystemCommand("Filter runs", "show runs matching a text", self.action_filter)

    # -- actions -----------------------------------------------------------------------------------
    def _selected(self) -> RunStatus | None:
        chosen = self.runs_table.selected()
        return next((r for r in self.runs if r.id == chosen), None)

    def _can_control(self) -> bool:
        if self.readonly:
            self.notify("read-only: lftop was started with --readonly", severity="warning")
        return not self.readonly

    def _refuse(self, text: str) -> None:
        self.notify(text, severity="warning")

    def _target(self) -> RunStatus | None:
        """The selected run when lftop may control runs; otherwise None, and the user is told why."""
        if not self._can_control():
            return None
        run = self._selected()
        if run is None:
            self._refuse("no run selected")
        return run

    def action_pause(self) -> None:
        if (run := self._target()) is None:
            return
        if run.external and run.alive:
            return self._refuse(f"{run.id} was not started by lftop: it can be stopped (s), not paused")
        if run.state != RunState.RUNNING:
            return self._refuse(f"{run.id} is {run.state}: only a running run can pause")
        self.control("pause", run.id)

    def action_resume(self) -> None:
        if (run := self._target()) is None:
            return
        if run.state == RunState.COMPLETED:
            return self._ask_continue(run)
        if run.alive:
            return self._refuse(f"{run.id} is {run.state}: nothing to resume")
        if not run.checkpoints and not run.external:
            return self._refuse(f"{run.id} has no complete checkpoint to resume from")
        self.control("resume", run.id)

    def action_stop(self) -> None:
        if (run := self._target()) is None:
            return
        if not run.alive:
            return self._refuse(f"{run.id} is {run.state}: not running")
        from lftop.tui.screens import ConfirmScreen

        question = f"Stop {run.id}? The process tree is killed and nothing is saved (p pauses with a checkpoint)."
        self.push_screen(ConfirmScreen(question), lambda yes: self.control("stop", run.id) if yes else None)

    def action_fix(self) -> None:
        if (run := self._target()) is None:
            return
        if run.id not in self.fixes:
            return self._refuse("no OOM fix to apply: f relaunches a run that ran out of memory")
        self.control("fix", run.id)

    def _ask_continue(self, run: RunStatus) -> None:
        """A completed run trains on: ask to which step, then resume it from its final checkpoint."""
        from lftop.tui.screens import AskScreen

        def answered(text: str | None) -> None:
            if text is None:
                return
            if not text.isdigit() or int(text) <= (run.step or 0):
                return self._refuse(f"continue {run.id}: give a step after {run.step or 0}, not {text!r}")
            self.control("resume", run.id, {"max_steps": int(text)})

        suggested = str(2 * (run.total_steps or run.step or 0) or "")
        self.push_screen(AskScreen(f"{run.id} completed at step {run.step}. Continue training to step:", suggested),
                         answered)

    def control(self, verb: str, run_id: str, overrides: dict | None = None) -> None:
        """Pause, resume, stop or fix-and-resume `run_id` in a worker (they touch disk and processes)."""
        fix = self.fixes.pop(run_id, None) if verb == "fix" else None
        self._act(verb, run_id, fix.set if fix else overrides)

    @work(thread=True, group="control")
    def _act(self, verb: str, run_id: str, overrides: dict | None = None) -> None:
        from lftop import ops
        from lftop.runs.rundir import RunDir, RunLocked

        run = RunDir(self.home / "runs" / run_id)
        try:
            if verb == "pause":
                ops.pause(run)
                text = f"{run_id}: pause requested, a checkpoint is saved at the next step"
            elif verb == "stop" and ops.external.is_external(run_id) and not run.path.exists():
                _, count = ops.external.stop(ops.external.find(run_id), self.home)
                text = f"{run_id}: stopped ({count} processes); r resumes it under lftop"
            elif verb == "resume" and run.meta().get("external") is True:
                new, step = ops.external.resume(run, self.home)
                self.post_message(Launched(new.id))
                text = f"{run_id}: resumed as {new.id} from step {step}"
            elif verb in ("resume", "fix"):
                if verb == "fix":
                    ops.wait_settled(run, 30)  # a failed run may take a moment to exit
                _, step = ops.resume(run, self.home, overrides=overrides)
                text = f"{run_id}: resumed from step {step}" + (
                    " with " + ", ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else "")
            else:
                count = ops.stop(run)
                text = f"{run_id}: stopped ({count} processes)"
            self.post_message(ActionDone(text))
        except (ops.Refused, RunLocked) as exc:
            self.post_message(ActionDone(str(exc), "warning"))
        except Exception as exc:  # the app outlives a failed action; the message says what went wrong
            self.post_message(ActionDone(f"{verb} {run_id} failed: {type(exc).__name__}: {exc}", "error"))

    @work(thread=True, group="control")
    def suggest_fix(self, run: RunStatus) -> None:
        """After an OOM: ask ops for the fix, and post it (the main thread keeps it for the fix key)."""
        from lftop import ops
        from lftop.runs.rundir import RunDir

        try:
            fix = ops.oom_fix(RunDir(self.home / "runs" / run.id))
        except ops.Refused as exc:
            self.post_message(ActionDone(str(exc), "warning"))
            return
        self.post_message(FixFound(run.id, fix))

    def action_launch(self) -> None:
        if not self._can_control():
            return
        from lftop.tui.screens import LaunchScreen

        self.push_screen(LaunchScreen(self.home), self._launch_chosen)

    def _launch_chosen(self, choice) -> None:
        if choice is not None:
            plan, queue = choice
            self.launch_plan(plan, queue=queue)

    @work(thread=True, group="control")
    def launch_plan(self, plan, fresh: bool = False, queue: bool = False) -> None:
        """Launch on the placement the launch screen estimated (it already asked about an OOM verdict), or
        queue the run until it fits."""
        from lftop import ops

        try:
            run = ops.launch(plan, self.home, fresh=fresh, accept_oom=not queue, queue=queue)
            self.post_message(Launched(run.id))
        except ops.HoldsCheckpoints as exc:
            self.post_message(LaunchBlocked(plan, exc.owner, str(exc)))
        except ops.Refused as exc:
            self.post_message(ActionDone(str(exc), "error"))
        except Exception as exc:  # e.g. no GPU readable to pick from: say so, keep the app
            self.post_message(ActionDone(f"launch failed: {type(exc).__name__}: {exc}", "error"))

    def action_follow_log(self) -> None:
        """Back to the end of the log, following it, whatever has focus."""
        self.log_tail.follow()

    def action_cycle_chart(self) -> None:
        """Chart the next metric the selected run's logs hold (loss, lr, grad_norm, eval_loss, rewards/...)."""
        names = self.curves.names if self.curves else []
        if not names:
            return self._refuse("no metrics to chart yet")
        current = names.index(self.chart_metric) if self.chart_metric in names else -1
        self.chart_metric = names[(current + 1) % len(names)]
        self.notify(f"chart: {self.chart_metric}", timeout=3)

    def action_open(self) -> None:
        run = self._selected()
        if run is None:
            return self._refuse("no run selected")
        from lftop.tui.screens import RunScreen

        curves = self.curves if self.curves and self.curves.run == run.id else None
        self.push_screen(RunScreen(run.id, curves, list(self.lines) if curves else []))

    def action_filter(self) -> None:
        box = self._filter_box()
        if box is None:
            box = Input(placeholder="filter runs (esc clears)", id="filter")
            self.query_one("#main").mount(box)
        box.display = True
        box.focus()

    def _filter_box(self) -> Input | None:
        """The filter, mounted on the first `/`."""
        found = self.query("#filter")
        return found.first(Input) if found else None

    def on_input_changed(self, event: Input.Changed) -> None:
        self._needle = event.value.strip().lower()
        self.runs_table.show(self.runs, self.etas, self._needle)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.runs_table.focus()

    def action_back(self) -> None:
        box = self._filter_box()
        if box is not None and box.display:
            box.value = ""
            box.display = False
            self.runs_table.focus()

    def action_help(self) -> None:
        keys = [(self.get_key_display(b.binding), b.binding.description)
                for b in self.active_bindings.values() if b.binding.description]
        from lftop.tui.screens import HelpScreen

        self.push_screen(HelpScreen(keys))

    def action_quit(self) -> None:
        alive = sum(1 for r in self.runs if r.alive)
        self.exit(f"lftop: {alive} run(s) keep going in the background; `lftop` attaches to them again." if alive else None)
