"""The app driven by Textual's pilot against real runs of the tiny model."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time

import psutil
import pytest

from conftest import ROOT, needs_llamafactory, until, wait_for, write_profile
from lftop import cli
from lftop.runs.rundir import RunDir
from lftop.runs.state import RunState
from lftop.tui import render
from lftop.tui.app import LftopApp
from lftop.tui.messages import Curves
from lftop.tui.screens import ConfirmScreen, HelpScreen, LaunchScreen, RunScreen
from lftop.tui.widgets import CurvePanel, LogTail, RunsTable


@pytest.fixture(autouse=True)
def app_state_set_on_the_main_thread_only(monkeypatch):
    """Workers post messages and never write the app's state: an attribute set on the app from any other
    thread than the main one fails the test (the launch worker used to set the row to select)."""
    offenders = []
    setattr_ = LftopApp.__setattr__

    def guarded(self, name, value):
        if threading.current_thread() is not threading.main_thread():
            offenders.append(f"{name} from {threading.current_thread().name}")
        setattr_(self, name, value)

    monkeypatch.setattr(LftopApp, "__setattr__", guarded)
    yield
    assert offenders == []


def state(app: LftopApp) -> str | None:
    return app.runs[0].state if app.runs else None


def notes(app: LftopApp) -> str:
    return " | ".join(n.message for n in app._notifications)


@pytest.mark.train
@needs_llamafactory
async def test_every_binding_against_a_real_run(home, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LFTOP_SIMULATE", "2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    write_profile(tmp_path / "profiles" / "aaa-tiny.toml", tiny, tmp_path / "out", max_steps=4000, save_steps=10000)
    app = LftopApp(home, interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("p")
        await until(pilot, lambda: "no run selected" in notes(app), 5)

        await pilot.press("l")  # launch: the first profile is ours (cwd profiles/ sort first by name)
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen.profile is not None, 30)
        assert app.screen.profile.name == "aaa-tiny"
        await pilot.press("enter")
        await until(pilot, lambda: state(app) == "running" and (app.runs[0].step or 0) > 2, 180, "running")

        await pilot.press("enter")  # open the run full-screen, then back
        await until(pilot, lambda: isinstance(app.screen, RunScreen), 5)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RunScreen), 5)

        await pilot.press("p")  # pause: a checkpoint, then the process exits
        await until(pilot, lambda: state(app) == "paused", 120, "paused")
        assert app.runs[0].checkpoints and not app.runs[0].alive
        await pilot.press("p")
        await until(pilot, lambda: "only a running run can pause" in notes(app), 5)

        await pilot.press("r")
        await until(pilot, lambda: state(app) == "running", 120, "resumed")
        assert len(app.query_one(LogTail).lines) > 0

        await pilot.press("slash")  # filter
        await pilot.press("z", "z", "z")
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 0, 5)
        await pilot.press("escape")
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 1, 5)

        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5)
        await pilot.press("escape")

        await pilot.press("f")
        await until(pilot, lambda: "no OOM fix to apply" in notes(app), 5)

        await pilot.press("s")  # stop asks first
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
        await pilot.press("n")
        assert state(app) == "running"
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5)
        await pilot.press("y")
        await until(pilot, lambda: state(app) == "stopped", 60, "stopped")
        await pilot.press("q")
    assert app.return_value is None  # nothing left running to mention


@pytest.mark.train
@needs_llamafactory
async def test_an_oom_offers_a_one_key_relaunch_with_a_fitting_change(home, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("LFTOP_SIMULATE", "1")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # a real torch.OutOfMemoryError while the micro-batch is 2
        "import transformers, torch\n"
        "_step = transformers.Trainer.training_step\n"
        "def training_step(self, *a, **k):\n"
        "    if self.state.global_step >= 7 and self.args.per_device_train_batch_size > 1:\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB')\n"
        "    return _step(self, *a, **k)\n"
        "transformers.Trainer.training_step = training_step\n")
    profile = write_profile(tmp_path / "p.toml", tiny, tmp_path / "out", max_steps=20, save_steps=5)
    profile.write_text(profile.read_text().replace("[launch]", f'[launch]\nenv = {{ PYTHONPATH = "{hook}" }}'))
    from lftop import ops
    from lftop.profiles import load

    run = ops.launch(ops.plan(load(profile)), home)
    app = LftopApp(home, interval=0.25, select=run.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: state(app) == "failed", 180, "the OOM")
        await until(pilot, lambda: run.id in app.fixes, 30, f"a fix: {notes(app)} {app.runs}")
        assert app.fixes[run.id].set == {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 2}
        assert "press f" in notes(app)
        await pilot.press("f")
        await until(pilot, lambda: state(app) == "completed", 180, f"completion after the fix: {notes(app)}")
    events = [e for e in run.events() if e["event"] == "resumed"]
    assert events[-1]["step"] == 5 and events[-1]["overrides"]["per_device_train_batch_size"] == 1


async def test_readonly_never_controls(home, tmp_path):
    app = LftopApp(home, interval=0.25, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("l", "p", "r", "s"):
            await pilot.press(key)
        await until(pilot, lambda: notes(app).count("read-only") == 4, 5)
        assert not isinstance(app.screen, (LaunchScreen, ConfirmScreen))


async def test_tab_moves_focus_and_ctrl_p_opens_the_palette(home):
    from textual.command import CommandPalette

    app = LftopApp(home, interval=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        assert app.focused is app.query_one(RunsTable)
        await pilot.press("tab")
        assert app.focused is not app.query_one(RunsTable)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), 5)
        await pilot.press(*"Launch a")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen), 5, "the launch screen from the palette")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), 5)


async def test_too_small_and_back(home):
    app = LftopApp(home, interval=1)
    async with app.run_test(size=(70, 20)) as pilot:
        await pilot.pause(0.2)
        assert app.query_one("#too-small").display and not app.query_one("#main").display
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert app.query_one("#main").display and not app.query_one("#too-small").display


async def test_a_large_log_shows_its_end_first_and_fills_the_history_in(home, monkeypatch):
    """Selecting a run with a big training.log: the view shows its last lines at once; the loss history
    arrives over the next polls while the runs table keeps updating."""
    import json

    from lftop.tui import feeds

    monkeypatch.setattr(feeds, "CATCH_UP", 256 << 10)  # read 256 KiB of history per poll instead of 32 MiB
    run, out = home / "runs" / "big-run", home / "out"
    run.mkdir(parents=True)
    out.mkdir()
    (run / "run.json").write_text(json.dumps({"id": "big-run", "output_dir": str(out), "gpus": "", "created": 0}))
    (run / "state").write_text("completed\n")
    steps = 20000
    frame = "\r  1%|          | {}/" + str(steps) + " [00:01<00:10,  9.0it/s]"
    with open(run / "training.log", "w") as log:  # as transformers writes: redraw, advance, clear, dict
        for step in range(1, steps + 1):
            log.write((frame.format(step - 1) if step > 1 else "") + frame.format(step) +
                      f"\r{{'loss': '{5 - step / steps:.4g}', 'learning_rate': '0.001', 'epoch': '{step / 1000:.4g}'}}\n")
        log.write(f"\r100%|##########| {steps}/{steps} [00:10<00:00,  9.0it/s]\nTHE LAST LINE\n")
    assert (run / "training.log").stat().st_size > 8 * feeds.CATCH_UP
    app = LftopApp(home, interval=0.25, select="big-run")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.curves is not None, 10, "the first poll")
        first = len(app.curves.loss)
        assert 0 < first < steps  # the history is still filling in
        assert any("THE LAST LINE" in line for line in app.query_one(LogTail).lines)
        await until(pilot, lambda: len(app.curves.loss) == steps, 60, "the whole history")
        assert app.curves.step == steps
        assert list(app.query_one(LogTail).lines).count("THE LAST LINE") == 1


def test_without_a_terminal_lftop_points_to_the_sub_commands(lftop):
    result = lftop(check=False)
    assert result.returncode == 2 and "needs a terminal" in result.stderr and "Traceback" not in result.stderr


async def test_collections_held_back_for_start_up_resume_after_the_first_frame(home):
    """cli.open_app disables the collector while the app starts; the app turns it back on with its feeds."""
    gc.disable()
    try:
        app = LftopApp(home, interval=0.25)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.feeds is not None, 10, "the feeds")
            assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def log_host():
    """An app holding only a LogTail."""
    from textual.app import App

    class Host(App):
        def compose(self):
            yield LogTail(id="log")

    return Host()


async def test_the_log_tail_follows_until_scrolled_up_and_counts_what_arrives_meanwhile():
    app = log_host()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(LogTail)
        log.add([f"line {i}" for i in range(50)])
        await pilot.pause()
        assert log.is_vertical_scroll_end and log.unseen == 0  # following
        log.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        log.add(["a\rb", "Traceback (most recent call last):", "  "])  # a tqdm line keeps its last frame
        await pilot.pause()
        assert log.scroll_y == 0 and log.unseen == 2 and "2 new lines" in str(log.border_subtitle)
        assert list(log.lines)[-2:] == ["b", "Traceback (most recent call last):"]
        log.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        log.add(["after"])
        await pilot.pause()
        assert log.is_vertical_scroll_end and log.unseen == 0 and not log.border_subtitle


async def test_a_following_log_renders_each_line_once_and_measures_it_without_a_worker():
    """Textual's Log re-rendered every visible line at each write (its cache fills only under a selection) and
    started a thread worker per write to measure widths: a following log cost most of the dashboard's CPU."""
    app = log_host()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(LogTail)
        highlighted = []
        highlight = log.highlighter.highlight
        log.highlighter.highlight = lambda text: (highlighted.append(text.plain), highlight(text))[1]
        workers = []
        app.workers.add_worker = lambda worker, **kw: workers.append(worker)
        for i in range(30):
            log.add([f"step {i} " + "x" * i, "ERROR boom" if i == 29 else f"plain {i}"])
            await pilot.pause()
        assert log.virtual_size.width >= len("step 29 " + "x" * 29)  # measured at the write
        assert not workers
        assert len(highlighted) == len(set(highlighted))  # no line highlighted twice
        assert "ERROR boom" in highlighted
        boom = next(strip for y in range(log.size.height) if (strip := log.render_line(y)).text.startswith("ERROR"))
        assert any(s.style and s.style.bold for s in boom)  # still styled, from the kept strip


async def test_a_growing_log_lays_out_the_screen_only_when_its_scrollbar_appears():
    """Widget.virtual_size asks for a layout of the whole screen at every change: a log that grows twice a
    second cost two full layouts a second. The log's length is only its scroll range."""
    app = log_host()
    async with app.run_test(size=(80, 12)) as pilot:
        log = app.query_one(LogTail)
        layouts = []
        app.screen.screen_layout_refresh_signal.subscribe(log, lambda screen: layouts.append(log.line_count))
        for i in range(60):
            log.add([f"line {i}"])
            await pilot.pause()
        assert layouts and max(layouts) < 30  # the first line and the scrollbars appearing, then none
        assert log.show_vertical_scrollbar and log.vertical_scrollbar.window_virtual_size == 60
        last = log.scrollable_content_region.height - 1
        assert log.is_vertical_scroll_end and log.render_line(last).text.strip() == "line 59"
        log.clear()
        await pilot.pause()
        assert not log.show_vertical_scrollbar  # and it goes when the log is cleared (another run selected)


async def test_the_launch_screen_lists_profiles_off_the_event_loop(home, tmp_path, monkeypatch):
    """A home on NFS must not freeze the app: the profile directories are listed by a thread worker."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "aaa-mine.toml").write_text('[train]\nmodel_name_or_path = "x"\n')
    on_main = []
    glob = Path.glob

    def watched(self, pattern, *args, **kw):
        if self.name == "profiles":
            on_main.append(threading.current_thread() is threading.main_thread())
        return glob(self, pattern, *args, **kw)

    monkeypatch.setattr(Path, "glob", watched)
    app = LftopApp(home, interval=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen.paths, 10, "the profiles")
        assert app.screen.paths[0].name == "aaa-mine.toml" and len(app.screen.paths) > 1  # and the shipped ones
        assert on_main and not any(on_main)
        await pilot.press("escape")


_READS: list[str] | None = None  # while set, files opened on the main thread (the audit hook below)

# Appends a logging step every 0.1 s: a tqdm frame and metric dict to training.log, a point to trainer_log.jsonl.
LOGGER = """
import json, sys, time
log, jsonl = sys.argv[1:3]
for step in range(1, 100000):
    with open(log, "a") as f:
        f.write(f"\\r{step}/100000 [00:10<01:00,  9.9it/s]\\r{{'loss': {2 + 1 / step:.4f}, 'epoch': 0.1}}\\n")
    with open(jsonl, "a") as f:
        f.write(json.dumps({"current_steps": step, "total_steps": 100000, "loss": 2 + 1 / step}) + "\\n")
    time.sleep(0.1)
"""


def _audit(event: str, args: tuple) -> None:
    if _READS is None or threading.current_thread() is not threading.main_thread():
        return
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, os.PathLike)):
        path = os.fspath(args[0])
        if not path.endswith((".py", ".pyc", ".so")) and not path.startswith((sys.prefix, sys.base_prefix)):
            _READS.append(f"{event} {path}")  # an import reads modules and lists sys.path: those are left out


async def test_the_event_loop_reads_no_file_while_a_run_logs_and_every_screen_opens(home, tmp_path, monkeypatch):
    """Threads fetch, the main thread renders: no log, run directory, /proc entry or profile is read on the
    event loop's thread, whatever the user opens."""
    global _READS
    import subprocess

    from lftop.runs.rundir import create

    monkeypatch.setenv("LFTOP_SIMULATE", "2")
    monkeypatch.chdir(tmp_path)
    run, out = create(home, "logging"), tmp_path / "out"
    out.mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mine.toml").write_text('[train]\nmodel_name_or_path = "x"\n')
    writer = subprocess.Popen([sys.executable, "-c", LOGGER, str(run.log), str(out / "trainer_log.jsonl")])
    try:
        run.write_meta({"command": ["x"], "args": {}, "env": {}, "output_dir": str(out), "created": time.time(),
                        "pid": writer.pid, "create_time": psutil.Process(writer.pid).create_time(), "gpus": "0"})
        run.set_state(RunState.RUNNING)
        sys.addaudithook(_audit)  # for the rest of the session; it acts only while _READS is set
        app = LftopApp(home, interval=0.5)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.runs and (app.runs[0].step or 0) > 3, 30, "the run's steps")
            _READS = []
            for key in ("enter", "escape", "l", "escape", "question_mark", "escape", "m", "e", "down", "up"):
                await pilot.press(key)
                await pilot.pause(0.6)
            reads, _READS = _READS, None
            assert app.runs[0].step > 10  # the run was followed meanwhile
        assert reads == []
    finally:
        _READS = None
        writer.kill()
        writer.wait()


async def test_settings_remap_keys_and_choose_the_theme_and_bad_ones_are_named_not_fatal(home):
    (home / "config.toml").write_text('[ui]\ntheme = "lftop-light"\ninterval = 2\n'
                                      '[keys]\nlftop.pause = "x"\n"lftop.stop" = "k"\n')
    app = LftopApp(home)
    assert (app.theme, app.interval, app.problems) == ("lftop-light", 2.0, [])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("x")  # pause, remapped (TOML's dotted key is a nested table: both spellings work)
        await until(pilot, lambda: "no run selected" in notes(app), 5)
        assert "x" in app.get_key_display(next(b.binding for b in app.active_bindings.values()
                                               if b.binding.id == "lftop.pause"))

    (home / "config.toml").write_text('[ui]\ntheme = "lftop-mnoo"\ninterval = "fast"\n[keys]\n"lftop.pasue" = "y"\n')
    app = LftopApp(home)
    assert (app.theme, app.interval) == ("lftop-dark", 1.0)
    said = " | ".join(app.problems)
    assert "did you mean 'lftop-mono'" in said and "did you mean 'lftop.pause'" in said and "interval" in said
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "lftop-mnoo" in notes(app), 5)

    assert LftopApp(home, theme="bogus").theme == "lftop-dark"  # --theme: the same, said of --theme
    (home / "config.toml").write_text("[ui\n")
    assert "ignoring" in LftopApp(home).problems[0]


def test_each_gpu_row_names_the_runs_holding_it_when_process_lines_do_not_fit(home):
    """A real process as a run's supervisor on GPU 0, pid 1 (not a run) on GPU 1: the compact layout shows
    who holds each GPU on its row, at 80 and at 160 columns; the tall layout has a line per process."""
    import subprocess

    from lftop.gpu.nvml import Nvml
    from lftop.gpu.ring import Rings
    from lftop.gpu.sampler import sample
    from lftop.gpu.simulated import SimulatedNvml
    from lftop.runs.process import ProcessRef
    from lftop.runs.rundir import RunDir

    supervisor = subprocess.Popen(["sleep", "60"])
    try:
        ref = ProcessRef.of(supervisor.pid)
        run = RunDir(home / "runs" / "glm3-ddp")
        run.path.mkdir(parents=True)
        run.write_meta({"id": "glm3-ddp", "pid": ref.pid, "create_time": ref.create_time, "gpus": "0"})
        sim = SimulatedNvml(count=3, home=home)
        sim.external = {1: [1]}
        s = sample(Nvml(sim), runs=[("glm3-ddp", ref)])
    finally:
        supervisor.kill()
    for width, shown in ((76, " glm3…"), (156, " glm3-ddp")):  # 80 columns: the id's start
        rows = render.gpu_panel(s, Rings(), width, detail=False).plain.splitlines()
        assert rows[0].endswith(shown) and rows[1].endswith(" +1") and len(rows) == 4, rows
        assert all(len(row) <= width for row in rows)
        assert "glm3" not in rows[2] and "+1" not in rows[2]
    tall = render.gpu_panel(s, Rings(), 156, detail=True).plain.splitlines()
    assert any(f"pid {ref.pid}" in line and "run glm3-ddp" in line for line in tall)
    assert not tall[0].endswith("glm3-ddp")


def test_a_bare_lftop_opens_the_app_with_the_parsers_defaults():
    """`lftop` alone skips argparse; it must get exactly what parsing no arguments gives."""
    assert vars(cli.build_parser().parse_args([])) == cli.APP_DEFAULTS
    assert vars(cli.build_parser().parse_args(["--readonly", "--interval", "2"])) == {
        **cli.APP_DEFAULTS, "readonly": True, "interval": 2.0}


def test_the_loss_chart_is_as_tall_as_the_panel_and_keeps_a_row_when_short():
    assert render.chart([0.0, 1.0], 2, height=2) == [" █", "▁█"]
    assert render.chart([3.0, 1.0, 2.0, 0.0], 2) == ["█▁"]  # two buckets keep their maxima, 3 and 2
    c = Curves("r", loss=[2.0, 1.5, 1.0], lr=[1e-4, 5e-5, 0.0], eval_loss=[1.2], step=3, total=10, eta_s=70)
    tall = render.curves(c, 60, 10).plain.split("\n")
    assert tall[0].startswith("loss 1.0000 (min 1.0000)") and "step 3/10 ETA 1m10s" in tall[0]
    assert len(tall) == 10 and tall[-3].startswith("loss ") and tall[-2].startswith("lr") and tall[-1].startswith("eval")
    short = render.curves(c, 40, 3).plain.split("\n")
    assert short[0] == "loss 1.0000 (min 1.0000)  eval 1.2000"  # what does not fit is left out, not cut
    assert [line[:5].strip() for line in short[1:]] == ["loss", "lr"]  # eval gives way first


async def test_relaunching_into_a_used_output_dir_offers_resume_fresh_or_cancel(home, tmp_path, monkeypatch):
    """No dead end: the app asks, and each answer works (a stand-in trainer writes the checkpoints)."""
    import asyncio

    from conftest import stand_in_profile
    from lftop import ops
    from lftop.profiles import load
    from lftop.runs.rundir import all_runs
    from lftop.runs.status import status
    from lftop.tui.screens import ChoiceScreen

    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    out = tmp_path / "out"
    profile = stand_in_profile(tmp_path / "profiles", str(out), "aaa")
    first = ops.launch(ops.plan(load(profile)), home)
    await asyncio.to_thread(wait_for, lambda: status(first).checkpoints == [5], 60, "the first checkpoint")
    await asyncio.to_thread(ops.stop, first)
    app = LftopApp(home, interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        async def relaunch() -> None:
            await pilot.press("l")
            await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen.plan is not None, 30)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ChoiceScreen), 30, f"the choice: {notes(app)}")

        await relaunch()
        assert f"resume {first.id}" in str(app.screen.choices) and "start fresh" in str(app.screen.choices)
        await pilot.press("c")
        await until(pilot, lambda: not isinstance(app.screen, ChoiceScreen), 10)
        assert len(all_runs(home)) == 1 and not status(first).alive

        await relaunch()
        await pilot.press("r")
        await until(pilot, lambda: status(first).alive, 60, f"the resumed run: {notes(app)}")
        await asyncio.to_thread(ops.stop, first)

        await relaunch()
        await pilot.press("f")
        await until(pilot, lambda: len(all_runs(home)) == 2, 60, f"a fresh run: {notes(app)}")
        aside = [p for p in out.iterdir() if p.name.startswith("set-aside-")]
        assert len(aside) == 1 and (aside[0] / "checkpoint-5" / "trainer_state.json").is_file()
        assert first.meta()["output_dir"] == str(aside[0])
        fresh = next(r for r in all_runs(home) if r.id != first.id)
        await asyncio.to_thread(ops.stop, fresh)
        await pilot.press("q")


async def test_a_completed_run_continues_from_the_app(home, tmp_path, monkeypatch):
    import asyncio

    from conftest import stand_in_profile
    from lftop import ops
    from lftop.profiles import load
    from lftop.runs.status import status
    from lftop.tui.screens import AskScreen

    profile = stand_in_profile(tmp_path, str(tmp_path / "out"))
    run = ops.launch(ops.plan(load(profile)), home)
    await asyncio.to_thread(wait_for, lambda: status(run).checkpoints == [5], 60, "the checkpoint")
    await asyncio.to_thread(ops.stop, run)
    RunDir(run.path).set_state(RunState.COMPLETED)  # as if it had reached its last step
    app = LftopApp(home, interval=0.25, select=run.id)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: state(app) == "completed", 30)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, AskScreen), 10)
        app.screen.query_one("#answer").value = "12"
        await pilot.press("enter")
        await until(pilot, lambda: status(run).alive, 60, f"the continued run: {notes(app)}")
        assert run.meta()["args"]["max_steps"] == 12
        await asyncio.to_thread(ops.stop, run)
        await pilot.press("q")


def test_nan_is_marked_on_the_chart_and_a_diverging_run_says_so():
    nan = float("nan")
    assert render.chart([1.0, nan, 0.5], 3, height=2) == ["█  ", "█×▁"]  # the lowest finite value: a sliver
    c = Curves("r", loss=[2.0, 1.5, nan], grad_norm=[1.0, 3.0, nan], step=3, total=10, diverged_at=3)
    first = render.curves(c, 100, 6).plain.split("\n")[0]
    assert first.startswith("DIVERGING at step 3  loss nan (min 1.5000)") and "grad nan" in first


async def test_a_dpo_run_charts_its_reward_accuracy_and_a_diverging_run_rings(home, tmp_path):
    """Runs whose logs are real ones (a DPO run made with LLaMA-Factory; a user's nan log from the corpus):
    the chart key cycles to the DPO metrics, and the diverging run rings the bell once."""
    from lftop.runs.rundir import create

    corpus = ROOT / "tests" / "data" / "logs"
    runs = {}
    for name, log in (("dpo", "made_here_dpo_lf095_tf56.log"), ("nan", "grad_nan_first_step_9631.log")):
        run = create(home, name)
        run.write_meta({"command": ["x"], "args": {}, "env": {}, "output_dir": str(tmp_path / name), "created": 1.0})
        run.set_state(RunState.COMPLETED)
        (run.path / "training.log").write_bytes((corpus / log).read_bytes())
        runs[name] = run.id
    app = LftopApp(home, interval=0.25, select=runs["dpo"])
    bells = []
    app.bell = lambda: bells.append(1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.curves and app.curves.run == runs["dpo"] and app.curves.names, 30)
        assert "rewards/accuracies" in app.curves.names and "rewards/margins" in app.curves.names
        for _ in app.curves.names:
            if app.chart_metric == "rewards/accuracies":
                break
            await pilot.press("c")
        await until(pilot, lambda: app.curves.chart == "rewards/accuracies" and app.curves.chart_values, 30)
        assert app.query_one(CurvePanel).render().plain.startswith("rewards/accuracies ")
        app.runs_table.move_cursor(row=[str(k.value) for k in app.runs_table.rows].index(runs["nan"]))
        await until(pilot, lambda: app.curves.run == runs["nan"] and app.curves.diverged_at is not None, 30)
        await until(pilot, lambda: "is diverging" in notes(app), 10)
        await pilot.pause(1)
        assert len(bells) == 1


async def test_a_completed_runs_long_log_shows_its_last_lines_when_selected(home, tmp_path):
    from lftop.runs.rundir import create

    runs = []
    for name, count in (("short", 3), ("long", 5000)):
        run = create(home, name)
        run.write_meta({"command": ["x"], "args": {}, "env": {}, "output_dir": str(tmp_path / name), "created": 1.0})
        run.set_state(RunState.COMPLETED)
        lines = [f"{name} line {i}: model config and tokenizer noise" for i in range(count)]
        lines[-2] = " 50%|█████     | 5/10 [00:05<00:05,  1.00it/s]\r100%|██████████| 10/10 [00:10<00:00,  1.00it/s]"
        (run.path / "training.log").write_text("\n".join(lines) + "\n")
        runs.append(run.id)
    app = LftopApp(home, interval=0.25, select=runs[0])
    async with app.run_test(size=(120, 40)) as pilot:
        log = app.query_one(LogTail)
        await until(pilot, lambda: log.lines and log.lines[-1].startswith("short line 2"), 30, "the short log")
        await pilot.press("up")  # select the long one (runs sort by id: long-... first)

        def at_the_end() -> bool:
            return (bool(log.lines) and log.lines[-1] == f"long line {4999}: model config and tokenizer noise"
                    and log.scroll_offset.y >= log.max_scroll_y)

        await until(pilot, at_the_end, 30, "the end of the long log in view")
        assert log.lines[-2] == "100%|██████████| 10/10 [00:10<00:00,  1.00it/s]"  # the bar's current frame
        log.scroll_home(animate=False)
        await pilot.pause(0.3)
        assert not at_the_end()
        await pilot.press("e")  # follows the log again from any focus (End moves the runs table's cursor)
        await until(pilot, at_the_end, 10, "the log followed again")


async def test_marked_runs_share_the_chart_with_a_legend(home, tmp_path):
    from lftop.runs.rundir import create

    ids = []
    for name, slope in (("lr1e-4", 1.0), ("lr3e-4", 2.0)):
        out = tmp_path / name
        out.mkdir()
        (out / "trainer_log.jsonl").write_text("".join(
            json.dumps({"current_steps": s, "total_steps": 40, "loss": 5 - slope * s / 40}) + "\n" for s in range(1, 41)))
        run = create(home, name)
        run.write_meta({"command": ["x"], "args": {}, "env": {}, "output_dir": str(out), "created": 1.0})
        run.set_state(RunState.COMPLETED)
        ids.append(run.id)
    app = LftopApp(home, interval=0.25, select=ids[0])
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: len(app.runs) == 2, 30)
        await pilot.press("m")
        app.runs_table.move_cursor(row=[str(k.value) for k in app.runs_table.rows].index(ids[1]))
        await pilot.press("m")
        panel = app.query_one(CurvePanel)
        await until(pilot, lambda: set(panel.losses) == set(ids), 30, "both runs' losses")
        text = panel.render().plain.split("\n")
        assert text[0].startswith("compare") and "steps 1..40" in text[0]
        labels = [line.split()[0] for line in text[1:3]]  # the legend: each run's name (its end) in its colour
        assert all(i.endswith(label) and len(label) >= 8 for i, label in zip(ids, labels, strict=True)), labels
        await pilot.press("m")  # unmark one: the chart is the selected run's again
        await until(pilot, lambda: not panel.losses, 10)


async def test_the_launch_screen_queues_a_run_that_does_not_fit_yet(home, tmp_path, monkeypatch):
    import asyncio

    from lftop import ops
    from lftop.profiles import load
    from lftop.runs.status import status
    from test_queue import SIM, profile

    monkeypatch.setenv("LFTOP_SIMULATE", SIM["LFTOP_SIMULATE"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    first = ops.launch(ops.plan(load(profile(tmp_path / "profiles", "a"))), home)
    profile(tmp_path / "profiles", "b")  # the same size: it does not fit beside the first
    await asyncio.to_thread(wait_for, lambda: status(first).alive, 30, "the first run")
    app = LftopApp(home, interval=0.25, select=first.id)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen.plan is not None, 30)
        options = app.screen.query_one("#profiles")
        for _ in range(10):  # to b.toml, the second profile, with the keys a user presses
            if options.highlighted == 1:
                break
            await pilot.press("down")
            await pilot.pause(0.1)
        await until(pilot, lambda: app.screen.profile is not None and app.screen.profile.name == "b"
                    and app.screen.plan is not None, 30, "b's estimate")
        plan = app.screen.plan
        assert plan.verdict == "oom", (plan.verdict, plan.note, plan.problem)
        await pilot.press("w")
        await until(pilot, lambda: any(r.state == "queued" for r in app.runs), 30, f"a queued run: {notes(app)}")
        queued = next(r for r in app.runs if r.state == "queued")
        assert "in queue" in queued.detail
        await asyncio.to_thread(ops.stop, first)
        await until(pilot, lambda: next(r for r in app.runs if r.id == queued.id).state != "queued", 60, "its start")
        await asyncio.to_thread(ops.stop, RunDir(home / "runs" / queued.id))


async def test_the_gpu_sampler_keeps_each_runs_nvml_peak_for_show(home, tmp_path, monkeypatch, lftop):
    """A run on a simulated GPU holds its predicted 17 GiB; the app's GPU sampler records the most NVML showed
    its processes holding, and `lftop show` puts it beside the prediction."""
    import asyncio

    from lftop import ops
    from lftop.profiles import load
    from lftop.runs.status import status
    from test_queue import SIM, profile

    monkeypatch.setenv("LFTOP_SIMULATE", SIM["LFTOP_SIMULATE"])
    run = ops.launch(ops.plan(load(profile(tmp_path, "a"))), home)
    await asyncio.to_thread(wait_for, lambda: status(run).alive, 30, "the run")
    app = LftopApp(home, interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: run.nvml_peaks().get("0", 0) > 16 << 30, 30, "the recorded NVML peak")
        await pilot.press("q")
    shown = await asyncio.to_thread(lftop.json, "show", run.id, "--json", env=SIM)
    assert shown["peak"]["nvml_gib"]["0"] == pytest.approx(17.0, abs=0.1) and shown["peak"]["predicted_gib"] == 17.02
    await asyncio.to_thread(ops.stop, run)


async def test_a_home_the_app_creates_is_private(tmp_path):
    import os
    import stat

    home = tmp_path / "fresh-home"
    old = os.umask(0o022)
    try:
        app = LftopApp(home, interval=0.25)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: (home / "runs").is_dir(), 30, "the runs folder")
            await pilot.press("q")
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and stat.S_IMODE((home / "runs").stat().st_mode) == 0o700


async def test_a_damaged_run_is_named_on_its_row_and_hides_no_other(home, tmp_path):
    from lftop.runs.rundir import create

    good = create(home, "good")
    good.write_meta({"command": ["x"], "args": {}, "env": {}, "output_dir": str(tmp_path / "out"), "created": 1.0})
    good.set_state(RunState.COMPLETED)
    bad = home / "runs" / "bad-run"
    bad.mkdir()
    (bad / "run.json").write_text('{"pid": "abc"')  # truncated
    app = LftopApp(home, interval=0.25)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.query_one(RunsTable).row_count == 2, 30, "both rows")
        cells = [str(c) for c in app.query_one(RunsTable).get_row("bad-run")]
        assert "unknown" in cells and any("run.json is damaged" in c for c in cells)
        assert "completed" in [str(c) for c in app.query_one(RunsTable).get_row(good.id)]
