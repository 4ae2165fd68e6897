"""`lftop scan`: what a LLaMA-Factory log holds, as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from lftop.logs import jsonl
from lftop.logs.follower import BLOCK, Follower
from lftop.logs.history import History
from lftop.logs.parse import LogParser
from lftop.logs.records import Failure, Point, Progress


@dataclass(frozen=True)
class Latest:
    """The newest point, progress and failure of a log, from its last bytes only."""

    point: Point | None
    progress: Progress | None
    failure: Failure | None


def tail(path: Path, window: int = 1024, most: int = 8 << 20) -> Latest:
    """Read only the end of a log, however large, to show its latest state at once.

    The window doubles from `window` bytes until it holds a point (or reaches `most`), so the cost
    depends on how far back the last point is, not on the size of the file. Line numbers count from
    the window's start; the full history is read separately, in the background.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        while True:
            start = max(0, size - window)
            f.seek(start)
            data = f.read(size - start)
            if start:
                data = data[data.find(b"\n") + 1:]  # drop the partial first line
            parser = LogParser()
            found = parser.feed_block(1, data) + parser.finish()
            point = next((r for r in reversed(found) if isinstance(r, Point)), None)
            if point is not None or start == 0 or window >= most:
                break
            window *= 2
    progress = next((r for r in reversed(found) if isinstance(r, Progress)), None)
    failure = next((r for r in reversed(found) if isinstance(r, Failure)), None)
    return Latest(point, progress, failure)


def scan(path: Path) -> History:
    """Everything a log holds, read in blocks."""
    history = History()
    follower = Follower(path)
    if is_jsonl(path):
        for number, text in follower.read() + follower.flush():
            history.add_jsonl(jsonl.parse_line(number, text))
        return history
    parser = LogParser()
    while (block := follower.read_block(BLOCK)).count:
        history.add_log(parser.feed_block(block.first, block.data))
    for number, text in follower.flush():
        history.add_log(parser.feed(number, text))
    history.add_log(parser.finish())
    return history


def is_jsonl(path: Path) -> bool:
    if path.suffix == ".jsonl":
        return True
    with open(path, "rb") as f:
        return f.read(64).lstrip().startswith(b'{"')


def to_json(history: History) -> dict:
    points = [
        {"step": p.step, "loss": p.loss, "lr": p.lr, "grad_norm": p.grad_norm, "epoch": p.epoch}
        for _, p in sorted(history.points.items())
    ]
    return {
        "points": points,
        "eval": [{"step": e.step, "eval_loss": e.eval_loss} for _, e in sorted(history.evals.items())],
        "progress": {"step": history.step, "total": history.total, "eta_s": history.eta_s},
        "errors": [{"kind": f.kind, "line": f.line, "message": f.message} for f in history.failures],
        "facts": history.facts,
    }


def to_csv(history: History) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "loss", "lr", "grad_norm", "epoch"])
    for _, p in sorted(history.points.items()):
        writer.writerow(["" if v is None else v for v in (p.step, p.loss, p.lr, p.grad_norm, p.epoch)])
    return out.getvalue()


def summary_text(path: Path, history: History) -> str:
    last = history.last()
    lines = [f"{path}: {len(history.points)} points, {len(history.evals)} evals"]
    if history.step is not None:
        eta = f", ETA {history.eta_s:.0f}s" if history.eta_s is not None else ""
        lines.append(f"progress: step {history.step}/{history.total}{eta}")
    if last:
        lines.append(f"last: step {last.step} loss {last.loss} lr {last.lr} grad_norm {last.grad_norm}")
    lines += [f"{f.kind} at line {f.line}: {f.message}" for f in history.failures if isinstance(f, Failure)]
    return "\n".join(lines)


def dumps(history: History) -> str:
    return json.dumps(to_json(history), indent=1)
