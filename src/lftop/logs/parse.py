"""Parse training.log (the stdout and stderr of a LLaMA-Factory run) into typed records.

Handles transformers' metric dicts in the 4.x (float) and 5.x (quoted string) forms, several to a
line behind tqdm frames; tqdm progress; the `***** train metrics *****` block; LLaMA-Factory's fact
lines; and failures: CUDA OOM, NCCL, tracebacks with or without torchrun's `[rankN]:` prefix,
torchrun's ChildFailedError and a SIGKILLed rank.

A metric dict carries no step. transformers prints it between clearing and redrawing the progress bar,
so its step is the one of the next training progress frame; points wait for that frame.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from lftop.logs import failures
from lftop.logs.records import Eval, Fact, Failure, Point, Progress, Record, Summary

_DICT = re.compile(r"\{'[^{}]*\}")
_FRAME = re.compile(
    r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+)(?:,\s*(?:([\d.]+)(it/s|s/it)|\?it/s))?"
)
_RANK = re.compile(r"^\[(?:rank|default)(\d+)\]:\s?")
_FACTS = (
    ("world_size", re.compile(r"Process rank: \d+, world size: (\d+)")),
    ("device", re.compile(r"Process rank: \d+, world size: \d+, device: ([^,\s]+)")),
    ("trainable_params", re.compile(r"trainable params: ([\d,]+)")),
    ("all_params", re.compile(r"trainable params: [\d,]+ \|\| all params: ([\d,]+)")),
    ("resumed_from", re.compile(r"(?:Resuming training from (?!checkpoint with)|Loading model from )(\S+?)\.?$")),
    ("resumed_step", re.compile(r"Resuming training from checkpoint with epoch \d+ and global step (\d+)")),
    ("total_steps", re.compile(r"Total optimization steps = ([\d,]+)")),
    ("nproc", re.compile(r"Initializing (\d+) distributed tasks")),
)
_FACT_HINT = re.compile(r"Process rank|trainable params|Resuming training from|Loading model from|Total optimization steps|distributed tasks")
_METRIC_ROW = re.compile(r"^\s+(\w+)\s+=\s+(\S+)\s*$")
_FAILURE_HINT = re.compile(r"rror|out of memory|NCCL|nccl|Traceback|exitcode|SIGKILL|^Killed|CUBLAS|Exception|Interrupt")


def _number(value: object) -> float | None:
    try:
        return float(value)  # 5.x prints '0.0003333'; 4.x prints floats
    except (TypeError, ValueError):
        return None


def _clock(text: str) -> float | None:
    if "?" in text:
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


class LogParser:
    """Feed complete lines in order; `finish()` at the end of a log that will not grow."""

    def __init__(self) -> None:
        self.train_total: int | None = None
        self._last_step: int | None = None
        self._pending: list[tuple[dict, int]] = []
        self._traceback: dict[str, int] = {}  # rank prefix -> line where its traceback started
        self._metrics: dict | None = None
        self._metrics_line = 0

    def feed(self, number: int, text: str) -> list[Record]:
        out: list[Record] = []
        if self._metrics is not None:
            if row := _METRIC_ROW.match(text):
                self._metrics[row.group(1)] = row.group(2)
                return out
            out.append(Summary(self._metrics, self._metrics_line))
            self._metrics = None
        segments = text.split("\r") if "\r" in text else (text,)
        for segment in segments:
            if segment:
                self._segment(number, segment, out)
        return out

    def _segment(self, number: int, segment: str, out: list[Record]) -> None:
        if "%|" in segment:
            frame = _FRAME.search(segment)
            if frame:
                self._frame(number, frame, out)
                return
        if "{'" in segment:
            for found in _DICT.findall(segment):
                self._dict(number, found, out)
            return
        if "***** train metrics *****" in segment:
            self._metrics, self._metrics_line = {}, number
            return
        if _FACT_HINT.search(segment):
            for key, pattern in _FACTS:
                if m := pattern.search(segment):
                    value = m.group(1).replace(",", "")
                    out.append(Fact(key, value, number))
                    if key == "total_steps":
                        self.train_total = int(value)
            return
        if _FAILURE_HINT.search(segment):
            self._failure(number, segment, out)

    def _frame(self, number: int, frame: re.Match, out: list[Record]) -> None:
        step, total = int(frame.group(2)), int(frame.group(3))
        if self.train_total is not None and total != self.train_total:
            return  # an evaluation or data-loading bar
        rate = _number(frame.group(6))
        if rate is not None and frame.group(7) == "s/it":
            rate = 1 / rate if rate else None
        eta = (total - step) / rate if rate else _clock(frame.group(5))
        self._last_step = step
        out.append(Progress(step, total, rate, eta, number))
        self._release(step, out)

    def _release(self, step: int | None, out: list[Record]) -> None:
        """Give waiting points their step: the frame's for the last, by epoch ratio for earlier ones."""
        if not self._pending:
            return
        last_epoch = _number(self._pending[-1][0].get("epoch"))
        for i, (values, number) in enumerate(self._pending):
            point_step = step
            if step is not None and i < len(self._pending) - 1:
                epoch = _number(values.get("epoch"))
                point_step = round(step * epoch / last_epoch) if epoch and last_epoch else None
            out.append(
                Point(point_step, _number(values.get("loss")), _number(values.get("learning_rate")),
                      _number(values.get("grad_norm")), _number(values.get("epoch")), number)
            )
        self._pending = []

    def _dict(self, number: int, text: str, out: list[Record]) -> None:
        try:
            values = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return
        if not isinstance(values, dict):
            return
        if "loss" in values:
            self._pending.append((values, number))
        elif "eval_loss" in values and (loss := _number(values["eval_loss"])) is not None:
            out.append(Eval(self._last_step, loss, _number(values.get("epoch")), number))
        elif "train_runtime" in values or "train_loss" in values:
            self._release(self._last_step, out)
            out.append(Summary(values, number))

    def _failure(self, number: int, segment: str, out: list[Record]) -> None:
        rank = _RANK.match(segment)
        key = rank.group(1) if rank else ""
        body = segment[rank.end():] if rank else segment
        if body.startswith("Traceback (most recent call last)"):
            self._traceback[key] = number
            return
        if failures.KILLED.search(body):
            out.append(Failure("killed", body.strip(), number))
            return
        if body[:1].isspace():
            return  # inside a traceback: File lines and source
        exception = failures.EXCEPTION.match(body.strip())
        if failures.OOM.search(body):
            out.append(Failure("oom", failures.oom_message(body), number))
        elif failures.NCCL.search(body):
            out.append(Failure("nccl", body.strip()[:500], number))
        elif exception and (key in self._traceback or "ChildFailedError" in body):
            out.append(Failure("traceback", body.strip()[:500], number))
        else:
            return
        self._traceback.pop(key, None)

    def finish(self) -> list[Record]:
        out: list[Record] = []
        if self._metrics is not None:
            out.append(Summary(self._metrics, self._metrics_line))
            self._metrics = None
        self._release(self._last_step, out)
        return out


def parse_lines(lines: Iterable[tuple[int, str]]) -> list[Record]:
    parser = LogParser()
    out: list[Record] = []
    for number, text in lines:
        out += parser.feed(number, text)
    return out + parser.finish()
