"""Screens over the dashboard: launch, one run full-screen, confirmation, help. Esc backs out of each."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, OptionList, Static

from lftop.profiles import Profile, ProfileError, convert, load
from lftop.tui.messages import Curves

if TYPE_CHECKING:
    from lftop.ops import Plan
from lftop.tui.widgets import CurvePanel, LogTail


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes", id="confirm.yes"),
                Binding("n,escape", "answer(False)", "No", id="confirm.no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question)
            yield Static("[b]y[/b] yes    [b]n[/b]/[b]esc[/b] no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChoiceScreen(ModalScreen[str | None]):
    """A question with a few answers, each on its own key; esc answers None."""

    BINDINGS = [Binding("escape", "choose(None)", "Cancel", id="choice.cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question, self.choices = question, choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question)
            yield Static("    ".join(f"[b]{key}[/b] {label}" for key, label in self.choices), classes="hint")

    def on_key(self, event) -> None:
        if event.key in {key for key, _ in self.choices}:
            event.stop()
            self.dismiss(event.key)

    def action_choose(self, key: str | None) -> None:
        self.dismiss(key)


class AskScreen(ModalScreen[str | None]):
    """One line of input; enter answers it, esc answers None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ask.cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question)
            yield Input(self.value, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The keys of the screen it was opened from, as remapped by the user's keymap."""

    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "Close", id="help.close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        lines = Text()
        lines.append("lftop keys\n\n", style="bold")
        for key, description in self.keys:
            lines.append(f"  {key:>8}  ", style="bold")
            lines.append(f"{description}\n")
        lines.append("\n  Runs keep going when lftop exits; any lftop attaches to them again.\n", style="dim")
        lines.append("  Remap keys by binding id in $LFTOP_HOME/config.toml, [keys] \"lftop.pause\" = \"P\".\n", style="dim")
        with Vertical(id="dialog"):
            yield Static(lines)


class RunScreen(Screen):
    """One run: a large loss chart and its log."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="run.back")]

    def __init__(self, run: str, curves: Curves | None, lines: list[str]) -> None:
        super().__init__()
        self.run, self.curves, self.lines = run, curves, lines

    def compose(self) -> ComposeResult:
        yield CurvePanel(id="run-curves")
        yield LogTail(id="run-log")
        yield Footer()

    def on_mount(self) -> None:
        self.update(self.curves, self.lines)

    def update(self, curves: Curves | None, lines: list[str]) -> None:
        if curves is not None and curves.run == self.run:
            self.query_one(CurvePanel).show(curves)
        if lines:
            self.query_one(LogTail).add(lines)


def profile_dirs(home: Path) -> list[Path]:
    from lftop import paths

    return [d for d in (Path.cwd() / "profiles", home / "profiles", paths.shipped("profiles")) if d.is_dir()]


class LaunchScreen(ModalScreen["tuple[Plan, bool] | None"]):
    """Pick a profile, see its arguments and memory estimate on the GPUs it would get, apply suggestions, launch
    now or queue until it fits.

    Dismissed with the plan it showed (and whether to queue), so the run gets exactly the GPUs estimated."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Back", id="launch.back"),
        Binding("enter", "launch", "Launch", id="launch.go", priority=True),
        Binding("w", "queue", "Queue until it fits", id="launch.queue"),
        *[Binding(str(i), f"apply({i})", show=False, id=f"launch.apply{i}") for i in range(1, 10)],
    ]

    def __init__(self, home: Path) -> None:
        super().__init__()
        self.home = home
        self.paths: list[Path] = []  # listed by a thread worker once the screen is up
        self.profile: Profile | None = None
        self.overrides: dict = {}
        self.plan: Plan | None = None
        self.shown: Path | None = None  # the highlighted profile: only its estimate is shown and launched

    def compose(self) -> ComposeResult:
        with Horizontal(id="launch"):
            yield OptionList(id="profiles")
            with VerticalScroll(id="launch-detail"):
                yield Static("reading profiles...", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).border_title = "Profiles"
        self.find_profiles()

    @work(thread=True, exclusive=True, group="profiles")
    def find_profiles(self) -> None:
        """The profiles in ./profiles, the home's and the shipped ones, listed off the event loop (a home on NFS)."""
        dirs = profile_dirs(self.home)
        paths = sorted({p.resolve() for d in dirs for p in d.glob("*.toml")}, key=lambda p: p.name)
        self.app.call_from_thread(self._listed, paths, dirs)

    def _listed(self, paths: list[Path], dirs: list[Path]) -> None:
        self.paths = paths
        options = self.query_one(OptionList)
        options.add_options([p.name for p in paths])
        if paths:
            options.highlighted = 0
        else:
            self.query_one("#detail", Static).update(
                f"no profiles (*.toml) in {', '.join(map(str, dirs)) or './profiles'}: `lftop import CONFIG.yaml "
                "-o profiles/NAME.toml` makes one of a LLaMA-Factory config (`lftop launch CONFIG.yaml` runs one as is)")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.overrides = {}
        self.shown = self.paths[event.option_index]
        self.profile = self.plan = None  # until its own estimate arrives
        self.evaluate(self.shown, {})

    @work(thread=True, exclusive=True, group="estimate")
    def evaluate(self, path: Path, overrides: dict) -> None:
        """Load, validate, place and estimate off the event loop (reads files, config.json and NVML)."""
        from lftop import ops

        text = Text()
        try:
            profile = load(path)
            if overrides:
                profile = replace(profile, train={**profile.train, **overrides})
        except ProfileError as exc:
            text.append("\n".join(str(p) for p in exc.problems), style="bold red")
            self.app.call_from_thread(self._show, path, None, None, text)
            return
        text.append(f"{profile.description or profile.name}\n", style="bold")
        for warning in profile.warnings:
            text.append(f"warning: {warning.key}: {warning.message}\n", style="yellow")
        if profile.abstract:
            text.append("a base for other profiles: launch one that extends it\n", style="yellow")
        text.append(f"effective batch {profile.effective_batch()}\n\n", style="dim")
        if profile.abstract:
            self.app.call_from_thread(self._show, path, profile, None, text)
            return
        plan = None
        try:
            plan = ops.plan(profile, home=self.home)
            _describe(plan, text)
        except Exception as exc:  # a surprising profile must not take the app down
            text.append(f"estimate failed: {type(exc).__name__}: {exc}\n", style="yellow")
        text.append("\n" + convert.to_yaml(profile.args()), style="dim")
        self.app.call_from_thread(self._show, path, profile, plan, text)

    def _show(self, path: Path, profile: Profile | None, plan: Plan | None, text: Text) -> None:
        if path != self.shown:
            return  # a slower estimate of a profile no longer highlighted: never the one Enter launches
        self.profile, self.plan = profile, plan
        self.query_one("#detail", Static).update(text)

    def action_apply(self, index: int) -> None:
        report = self.plan.report if self.plan else None
        if report is None or index > len(report.suggestions) or self.profile is None:
            self.notify("no such suggestion", severity="warning")
            return
        self.overrides = {**self.overrides, **report.suggestions[index - 1].set}
        self.evaluate(self.profile.path, dict(self.overrides))

    def action_launch(self) -> None:
        if self.profile is None or self.profile.abstract or self.plan is None:
            self.notify("choose a valid profile first", severity="warning")
            return
        plan = self.plan
        if plan.verdict == "oom":
            question = (f"{self.profile.name} is predicted to run out of memory "
                        f"({plan.report.per_gpu_gib:.1f} GiB > {plan.report.capacity_gib:.1f} GiB). Launch anyway?")
            self.app.push_screen(ConfirmScreen(question), lambda yes: self.dismiss((plan, False)) if yes else None)
            return
        self.dismiss((plan, False))

    def action_queue(self) -> None:
        """Wait (in the run's own detached process) until it fits its GPUs, then start by itself."""
        if self.profile is None or self.profile.abstract or self.plan is None:
            self.notify("choose a valid profile first", severity="warning")
            return
        self.dismiss((self.plan, True))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def _describe(plan: Plan, text: Text) -> None:
    """The plan's estimate: where, the verdict, the breakdown and numbered suggestions."""
    report = plan.report
    if plan.placement is not None and plan.placement.cuda_visible_devices:
        text.append(f"GPUs {plan.placement.cuda_visible_devices}, {plan.placement.nproc} rank(s)\n", style="dim")
    if report is None:
        text.append(f"estimate: {plan.problem or plan.note}\n", style="yellow" if plan.problem else "dim")
        return
    est = report.estimate
    text.append(f"model {report.arch.name or '?'} ({est.params / 1e9:.2f}B params, "
                f"{est.trainable_params / 1e6:.1f}M trainable) from {report.arch.source}\n")
    style = {"fits": "green", "tight": "yellow", "oom": "bold red"}.get(report.verdict or "", "")
    verdict = f" of {report.capacity_gib:.1f} GiB free: {report.verdict.upper()}" if report.capacity_gib else ""
    text.append(f"predicted peak per GPU: {report.per_gpu_gib:.1f} GiB{verdict}\n", style=style)
    for part, gib in est.breakdown.items():
        if gib >= 0.005:
            text.append(f"  {part:<16} {gib:7.2f} GiB\n", style="dim")
    if plan.note:
        text.append(f"{plan.note}\n", style="dim")
    for i, s in enumerate(report.suggestions[:9], 1):
        setting = ", ".join(f"{k}={v}" for k, v in s.set.items())
        text.append(f" [{i}] {setting}: {s.per_gpu_gib:.1f} GiB  ", style="bold")
        text.append(f"{s.why}\n", style="dim")
