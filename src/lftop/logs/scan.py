"""`lftop scan`: what a LLaMA-Factory log holds, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lftop.logs import jsonl
from lftop.logs.follower import Follower, whole_lines
from lftop.logs.history import History
from lftop.logs.parse import LogParser
from lftop.logs.records import Failure


def scan(path: Path) -> History:
    """Everything a complete log holds, read in blocks of whole lines (follower.whole_lines)."""
    history = History()
    if is_jsonl(path):
        follower = Follower(path)
        for number, text in follower.read() + follower.flush().lines():
            history.add_jsonl(jsonl.parse_line(number, text, alone=True))
        return history
    parser, first = LogParser(), 1
    for data in whole_lines(path):
        history.add_log(parser.feed_block(first, data))
        first = parser.next_line
    history.add_log(parser.finish())
    return history


def is_jsonl(path: Path) -> bool:
    if path.suffix == ".jsonl":
        return True
    with open(path, "rb") as f:
        return f.read(64).lstrip().startswith(b'{"')


def to_json(history: History) -> dict:
    """What `scan --json` prints (through lftop.console.dumps: nan and inf as strings). Each point has step,
    loss, lr, grad_norm and epoch, then every other metric of its dict by name; each evaluation likewise."""
    points = [
        {"step": p.step, "loss": p.loss, "lr": p.lr, "grad_norm": p.grad_norm, "epoch": p.epoch, **(p.metrics or {})}
        for _, p in sorted(history.points.items())
    ]
    return {
        "points": points,
        "eval": [{"step": e.step, "eval_loss": e.eval_loss, **(e.metrics or {})}
                 for _, e in sorted(history.evals.items())],
        "metrics": history.metric_names(),
        "diverged_at": history.diverged_at,
        "progress": {"step": history.step, "total": history.total, "eta_s": history.eta_s},
        "errors": [{"kind": f.kind, "line": f.line, "message": f.message} for f in history.failures],
        "facts": history.facts,
    }


def to_csv(history: History) -> str:
    """One row a point: step, loss, lr, grad_norm, epoch, then a column for each other metric of the points."""
    extra = sorted({name for p in history.points.values() if p.metrics for name in p.metrics})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "loss", "lr", "grad_norm", "epoch", *extra])
    for _, p in sorted(history.points.items()):
        values = (p.step, p.loss, p.lr, p.grad_norm, p.epoch, *((p.metrics or {}).get(name) for name in extra))
        writer.writerow(["" if v is None else v for v in values])
    return out.getvalue()


def summary_text(path: Path, history: History) -> str:
    last = history.last()
    lines = [f"{path}: {len(history.points)} points, {len(history.evals)} evals"]
    if history.step is not None:
        eta = f", ETA {history.eta_s:.0f}s" if history.eta_s is not None else ""
        lines.append(f"progress: step {history.step}/{history.total}{eta}")
    if last:
        lines.append(f"last: step {last.step} loss {last.loss} lr {last.lr} grad_norm {last.grad_norm}")
    if history.diverged_at is not None:
        lines.append(f"diverging: loss or grad norm is nan or infinite from step {history.diverged_at}")
    lines += [f"{f.kind} at line {f.line}: {f.message}" for f in history.failures if isinstance(f, Failure)]
    return "\n".join(lines)
