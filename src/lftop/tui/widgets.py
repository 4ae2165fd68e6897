"""The dashboard's panels. They render what messages bring; none of them reads files or NVML."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable, Log, Static

from lftop.gpu.ring import Rings
from lftop.tui import render

if TYPE_CHECKING:
    from lftop.gpu.sampler import Sample
    from lftop.runs.status import RunStatus
    from lftop.tui.messages import Curves

_ERROR = re.compile(r"Error|error:|Traceback|out of memory|NCCL|Killed|exitcode", re.I)
_WARN = re.compile(r"WARNING|Warning")


class GpuPanel(Static):
    """Per-GPU memory, utilisation, temperature, power and history; processes and their runs."""

    def __init__(self, **kw) -> None:
        super().__init__("reading GPUs...", **kw)
        self.border_title = "GPUs"
        self.sample: Sample | None = None
        self.rings = Rings()
        self._shown: Text | None = None

    def show(self, sample: Sample) -> None:
        self.sample = sample
        self.refresh_text()

    def refresh_text(self) -> None:
        detail = self.app.size.height >= 40
        text = render.gpu_panel(self.sample, self.rings, self.content_size.width or self.app.size.width, detail)
        if text != self._shown:  # an idle server's panel does not change: no frame for it
            lines = text.plain.count("\n")
            # a layout of the whole screen only when the panel's height changes, not at every sample
            self.update(text, layout=self._shown is None or lines != self._shown.plain.count("\n"))
            self._shown = text


def _width(cell) -> int:
    return cell_len(cell.plain if isinstance(cell, Text) else str(cell))


class RunsTable(DataTable):
    """One row per run: state, progress, loss, ETA, GPUs, age."""

    COLUMNS = ("run", "state", "progress", "loss", "ETA", "GPUs", "age")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        for name in self.COLUMNS:
            self.add_column(Text(name), key=name)  # Text, not markup: parsing markup loads Rich's emoji table
        self.border_title = "Runs"

    marked: frozenset[str] = frozenset()

    def show(self, runs: list[RunStatus], etas: dict[str, float | None], needle: str) -> None:
        wanted = [r for r in runs if not needle or needle in f"{r.id} {r.state} {r.profile}".lower()]
        keys = [r.id for r in wanted]
        present = [str(k.value) for k in self.rows]
        if present != keys:
            selected = self.selected()
            self.clear()
            for r in wanted:
                self.add_row(*self._cells(r, etas.get(r.id)), key=r.id)
            self._measure()
            if selected in keys:
                self.move_cursor(row=keys.index(selected))
            self.scroll_to(x=0, animate=False, immediate=True)  # the run id column stays in view
            return
        wider = False
        for r in wanted:
            for column, value in zip(self.COLUMNS, self._cells(r, etas.get(r.id)), strict=True):
                old = self.get_cell(r.id, column)
                if old != value:  # a table redrawn for nothing costs a frame
                    resized = _width(old) != _width(value)  # the columns are measured again only then
                    self.update_cell(r.id, column, value, update_width=resized)
                    wider = wider or resized
        if wider:
            self._measure()

    def _measure(self) -> None:
        """Column widths from the cells, now. A DataTable measures new cells when idle, and a frame drawn
        before that (a busy machine) was kept with the old widths until a cell changed again."""
        for key, column in self.columns.items():
            cells = (self.get_cell(row, key) for row in self.rows)
            column.content_width = max([_width(column.label), *map(_width, cells)])
        self.refresh()

    def _cells(self, r: RunStatus, eta: float | None) -> tuple:
        state = Text(r.state, style=render.STATE_STYLE.get(r.state, ""))
        if r.alerts:
            state.append(" !", style="bold yellow")  # stalled, or memory near capacity: the alert says which
        loss = f"{r.loss:.4f}" if r.loss is not None else "-"
        gpus = ",".join(n.name for n in r.nodes) if r.nodes else "cpu" if r.gpus == "" else (r.gpus or "all")
        progress = Text(r.problem, style="red") if r.problem else Text(r.detail or "", style="dim") \
            if r.state == "queued" else render.progress(r.step, r.total_steps)
        name = Text(r.id, style="bold" if r.id in self.marked else "")
        if r.id in self.marked:
            name = Text("+", style="bold cyan") + name
        elif r.external:
            name.stylize("italic")
        return (name, state, progress, loss,
                render.duration(eta) if r.state == "running" else "-", gpus, render.age(r.created))

    def selected(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # the cursor is past the rows after a filter
            return None


class CurvePanel(Widget):
    """The selected run's latest numbers, its loss as a chart as tall as the panel, learning rate and eval loss."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "Loss"
        self.curves: Curves | None = None
        self.losses: dict[str, dict[int, float]] = {}  # runs marked for comparison

    def show(self, c: Curves) -> None:
        if c == self.curves:
            return
        self.curves = c
        self.border_title = f"Loss · {c.run}"
        self.refresh()

    def compare(self, losses: dict[str, dict[int, float]]) -> None:
        self.losses = losses
        self.refresh()

    def render(self) -> Text:
        if len(self.losses) >= 2:
            return render.compared(self.losses, self.content_size.width, self.content_size.height)
        if self.curves is None:
            return Text("no run selected", style="dim")
        return render.curves(self.curves, self.content_size.width, self.content_size.height)


class _Severity(Highlighter):
    """Error lines bold red, warnings yellow."""

    def highlight(self, text: Text) -> None:
        if _ERROR.search(text.plain):
            text.stylize("bold red")
        elif _WARN.search(text.plain):
            text.stylize("yellow")


class LogTail(Log):
    """Follows the run's log; stops following when scrolled up, counting what arrives meanwhile."""

    DEFAULT_CSS = "LogTail { overflow: auto auto; }"  # scrollbars when there is more to see, not on an empty log

    # The log's length is its scroll range, not its size on screen (the panel's is set by the layout): a new line
    # updates the scrollbars. Widget's virtual_size asks for a layout of the whole screen at every write instead.
    # (So a LogTail is never sized `auto`, which would read its size from virtual_size.)
    virtual_size = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        self._scroll_update(size)  # a scrollbar that appears or goes still asks for a layout (its own reactive)

    def __init__(self, **kw) -> None:
        super().__init__(max_lines=2000, highlight=True, auto_scroll=False, **kw)
        self.highlighter = _Severity()
        self.border_title = "Log"
        self.unseen = 0
        self._strips: LRUCache[tuple[str, Style], Strip] = LRUCache(1024)

    def _update_size(self, updates: int, lines: list[str]) -> None:
        """The widest new line, measured here: Textual's Log starts a thread worker for it at every write."""
        if lines:
            self._update_maximum_width(updates, max(cell_len(self._process_line(line)) for line in lines))

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        """A line rendered once, kept by its text and style. Textual 8's Log fills its own cache only while text
        is selected, so a following log highlighted and rendered every visible line again at each new line."""
        if self.text_selection is not None:
            return super()._render_line_strip(y, rich_style)
        key = (self.lines[y], rich_style)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = super()._render_line_strip(y, rich_style)
        return strip

    def add(self, lines: list[str]) -> None:
        following = self.is_vertical_scroll_end or self.max_scroll_y == 0
        shown = [line for raw in lines if (line := raw.rsplit("\r", 1)[-1]).strip()]  # a tqdm line: its last frame
        if not shown:
            return
        self.write_lines(shown, scroll_end=following)
        if following:  # once the new lines are laid out (a fresh log's height is not known yet when written)
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)
        self.unseen = 0 if following else self.unseen + len(shown)
        self.border_subtitle = f"↓ {self.unseen} new lines (e follows)" if self.unseen else ""

    def follow(self) -> None:
        self.unseen = 0
        self.border_subtitle = ""
        self.scroll_end(animate=False, immediate=True)

    def watch_show_horizontal_scrollbar(self) -> None:
        """A horizontal scrollbar that appears takes the bottom row: a following log scrolls down by it."""
        self.on_resize()

    def on_resize(self) -> None:
        if not self.unseen:  # following: stay at the end whatever the layout does
            self.call_after_refresh(self.scroll_end, animate=False, immediate=True)
