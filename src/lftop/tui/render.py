"""Rich renderables for the panels: text built from snapshots, no I/O."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from rich.text import Text

from lftop.gpu.ring import Rings
from lftop.runs.state import RunState
from lftop.units import GIB

if TYPE_CHECKING:
    from lftop.gpu.sampler import Sample
    from lftop.tui.messages import Curves

BARS = "▁▂▃▄▅▆▇█"


NOT_FINITE = "×"  # a nan or infinite value: a mark on the bottom row, a gap above it


def _bucket(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else values[0]


def chart(values: list[float], width: int, height: int = 1, lo: float | None = None,
          hi: float | None = None) -> list[str]:
    """`height` rows of block characters, one column per value of the last `width` (bucketed by max when
    longer); the lowest value still shows as a sliver; nan and infinities are marked, never drawn."""
    if not values or width <= 0 or height <= 0:
        return []
    if len(values) > width:
        step = len(values) / width
        values = [_bucket(values[int(i * step): max(int((i + 1) * step), int(i * step) + 1)]) for i in range(width)]
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    span, eighths = (hi - lo) or 1.0, height * 8
    levels = [1 + min(eighths - 1, max(0, int((v - lo) / span * (eighths - 0.001)))) if math.isfinite(v) else None
              for v in values]
    return ["".join((NOT_FINITE if below == 0 else " ") if level is None else
                    " " if (n := level - 8 * below) <= 0 else BARS[min(n, 8) - 1] for level in levels)
            for below in range(height - 1, -1, -1)]


def _number(value: float, fmt: str) -> str:
    return format(value, fmt) if math.isfinite(value) else str(value)


def spark(values: list[float], width: int, lo: float | None = None, hi: float | None = None) -> str:
    """A one-line sparkline of the last `width` values."""
    return "".join(chart(values, width, 1, lo, hi))


def curves(c: Curves, width: int, height: int) -> Text:
    """The latest numbers on the first line (as many as fit, most useful first), then the loss chart
    filling what the lr and eval lines leave."""
    finite = [v for v in c.chart_values if math.isfinite(v)]
    name = c.chart
    parts = [f"{name} {_number(c.chart_values[-1], '.4f')}" + (f" (min {min(finite):.4f})" if finite else "")
             if c.chart_values else f"no {name} yet"]
    if c.diverged_at is not None:
        parts.insert(0, f"DIVERGING at step {c.diverged_at}")
    if c.chart != "loss" and c.loss:
        parts.append(f"loss {_number(c.loss[-1], '.4f')}")
    if c.step is not None:
        parts.append(f"step {c.step}/{c.total} ETA {duration(c.eta_s)}")
    if c.eval_loss:
        parts.append(f"eval {_number(c.eval_loss[-1], '.4f')}")
    if c.lr:
        parts.append(f"lr {_number(c.lr[-1], '.2e')}")
    if c.grad_norm:
        parts.append(f"grad {_number(c.grad_norm[-1], '.3f')}")
    line = parts[0]
    for part in parts[1:]:
        if len(line) + 2 + len(part) <= width:
            line += "  " + part
    out = Text(line[:width], style="bold red" if c.diverged_at is not None else "")  # one line: rows keep places
    extra = [(name, values) for name, values in (("lr", c.lr), ("eval", c.eval_loss)) if values]
    while extra and height - 1 - len(extra) < 1:
        extra.pop()  # too short: the loss chart keeps a row, eval goes first, then lr
    rows = chart(c.chart_values, width - 5, max(1, height - 1 - len(extra)))
    label = f"{c.chart.rsplit('/', 1)[-1][:4]:<5}"
    for i, row in enumerate(rows):
        out.append("\n" + (label if i == len(rows) - 1 else "     "), style="dim")
        out.append(row, style="green")
    for name, values in extra:
        out.append(f"\n{name:<5}", style="dim")
        out.append(spark(values, width - 5), style="cyan")
    return out


COMPARE_COLOURS = ("green", "cyan", "magenta", "yellow", "blue", "red")


def compared(losses: dict[str, dict[int, float]], width: int, height: int) -> Text:
    """Marked runs' loss curves on one step axis and one scale, a row each, its colour and name the legend."""
    out = Text("compare (m marks runs)  ", style="bold")
    steps = sorted({s for curve in losses.values() for s in curve})
    finite = [v for curve in losses.values() for v in curve.values() if math.isfinite(v)]
    if not steps or not finite:
        return out + Text("no loss logged yet", style="dim")
    lo, hi = min(finite), max(finite)
    out.append(f"loss {lo:.4f}..{hi:.4f}, steps {steps[0]}..{steps[-1]}", style="dim")
    label_w = min(24, max(len(r) for r in losses) + 1)
    cols = max(1, width - label_w - 1)
    for i, (run, curve) in enumerate(list(losses.items())[:max(1, height - 1)]):
        colour = COMPARE_COLOURS[i % len(COMPARE_COLOURS)]
        # one column per slice of the common step axis; a run with no point in a slice leaves a gap
        row = []
        for c in range(cols):
            first, last = steps[0] + (steps[-1] - steps[0] + 1) * c / cols, steps[0] + (steps[-1] - steps[0] + 1) * (c + 1) / cols
            values = [v for s, v in curve.items() if first <= s < last]
            row.append(chart([_bucket(values)], 1, 1, lo, hi)[0] if values else " ")
        out.append(f"\n{run[-label_w + 1:]:<{label_w}}", style=colour)
        out.append("".join(row), style=colour)
    return out


def bar(fraction: float | None, width: int) -> Text:
    if fraction is None:
        return Text("N/A".center(width), style="dim")
    filled = round(max(0.0, min(1.0, fraction)) * width)
    style = "bold red" if fraction > 0.9 else "yellow" if fraction > 0.7 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def na(value, fmt: str = "{}") -> str:
    return "N/A" if value is None else fmt.format(value)


def gpu_panel(s: Sample | None, rings: Rings, width: int, detail: bool) -> Text:
    """One line per GPU (memory bar, utilisation, temperature, power, history), processes when `detail`."""
    if s is None:
        return Text("reading GPUs...", style="dim")
    g = s.gpus
    out = Text()
    if g.error:
        out.append(f"GPUs: {g.error}\n", style="yellow")
    name_w = 14 if width < 100 else 24
    spark_w = max(0, width - name_w - 66)
    for d in g.devices:
        if d.lost:
            out.append(f"{d.index} ", style="bold")
            out.append(f"LOST: {d.error}\n", style="bold red")
            continue
        used = d.mem_used / GIB if d.mem_used is not None else None
        total = d.mem_total / GIB if d.mem_total else None
        row = len(out)
        out.append(f"{d.index} ", style="bold")
        out.append(f"{(d.name or '?').replace('NVIDIA ', '').replace('GeForce ', '')[:name_w]:<{name_w}} ")
        out.append_text(bar(used / total if used is not None and total else None, 12))
        out.append(f" {na(used, '{:5.1f}')}/{na(total, '{:.0f}')}G ")
        util = d.util_gpu
        out.append(f"{na(util, '{:>3}%'):>4}", style="bold green" if util and util > 50 else "")
        temp_style = "bold red" if d.temperature and d.temperature >= 85 else ""
        out.append(f" {na(d.temperature, '{}°C'):>5}", style=temp_style)
        out.append(f" {na(d.power_w, '{:.0f}'):>4}/{na(d.power_limit_w, '{:.0f}')}W fan {na(d.fan, '{}%'):>4} ")
        held = "" if detail else _owners(s, d)  # no process lines in this layout: who holds the GPU, on its row
        history_w = min(spark_w, width - (len(out) - row) - len(held) - 1) if held else spark_w
        if history_w >= 8:
            out.append(spark(rings.get(f"gpu{d.index}.util").values(), history_w, 0, 100), style="cyan")
        if held and (room := width - (len(out) - row)) >= 3:
            out.append(f" {held}" if len(held) < room else f" {held[:room - 2]}…", style="bold magenta")
        out.append("\n")
        if detail:
            for p in d.processes:
                o = s.owners.get(p.pid)
                who = f"run {o.run}" if o and o.run else (o.user or "?") if o else "?"
                mem = na(p.used_bytes / GIB if p.used_bytes is not None else None, "{:.1f}G")
                out.append(f"   └ pid {p.pid:<7} {mem:>6} {who}", style="bold magenta" if o and o.run else "dim")
                out.append(f"  {(o.command if o else '')[:max(0, width - 50)]}\n", style="dim")
    for node, remote in sorted(s.nodes.items()):
        _node_rows(out, node, remote, width)
    h = s.host
    out.append(f"host CPU {h.cpu_percent:4.0f}%  RAM {h.ram_used / GIB:.1f}/{h.ram_total / GIB:.0f}G  "
               f"swap {h.swap_used / GIB:.1f}G  load {h.load[0]:.2f}", style="dim")
    disk = min(h.disk_free.values(), default=None)
    if disk is not None:
        out.append(f"  disk {disk / GIB:.0f}G free", style="red" if disk < 10 * GIB else "dim")
    return out


def _node_rows(out: Text, node: str, remote: dict, width: int) -> None:
    """A Slurm node's GPUs, one line each, from the `lftop gpus --json` sample taken inside the job."""
    devices = remote.get("gpus", {}).get("devices", []) if isinstance(remote, dict) else []
    if not devices:
        out.append(f"{node}: no GPU reading\n", style="dim")
    for d in devices:
        used, total, util = d.get("mem_used"), d.get("mem_total"), d.get("util_gpu")
        fraction = used / total if isinstance(used, int) and isinstance(total, int) and total else None
        out.append(f"{node}/{d.get('index', '?')} ", style="bold")
        out.append(f"{str(d.get('name') or '?').replace('NVIDIA ', '')[:14]:<14} ")
        out.append_text(bar(fraction, 12))
        out.append(f" {na(used / GIB if isinstance(used, int) else None, '{:5.1f}')}/"
                   f"{na(total / GIB if isinstance(total, int) else None, '{:.0f}')}G {na(util, '{:>3}%'):>4}\n")


def _owners(s: Sample, d) -> str:
    """The runs holding a GPU's processes, then how many other processes: "glm3-ddp +1"."""
    runs, others = [], 0
    for p in d.processes:
        o = s.owners.get(p.pid)
        if o is None or o.run is None:
            others += 1
        elif o.run not in runs:
            runs.append(o.run)
    return " ".join(runs + ([f"+{others}"] if others else []))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def age(created: float | None) -> str:
    return duration(time.time() - created) if created else "-"


def progress(step: int | None, total: int | None, width: int = 10) -> Text:
    if step is None or not total:
        return Text("-")
    return bar(step / total, width) + Text(f" {step}/{total}")


STATE_STYLE = {
    RunState.RUNNING: "bold green", RunState.STARTING: "cyan", RunState.PAUSING: "yellow", RunState.PAUSED: "yellow",
    RunState.STOPPING: "dim", RunState.FINISHING: "blue", RunState.COMPLETED: "blue", RunState.FAILED: "bold red",
    RunState.LOST: "bold red", RunState.STOPPED: "dim", RunState.UNKNOWN: "red",
}
