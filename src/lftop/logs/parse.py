"""Parse training.log (the stdout and stderr of a LLaMA-Factory run) into typed records.

Handles transformers' metric dicts in the 4.x (float) and 5.x (quoted string) forms, several to a
line behind tqdm frames; tqdm progress; the `***** train metrics *****` block; LLaMA-Factory's fact
lines; and failures: CUDA OOM, NCCL, tracebacks with or without torchrun's `[rankN]:` prefix,
torchrun's ChildFailedError, DeepSpeed's launcher exit and a SIGKILLed rank.

Logs from the wild: values are kept as printed, `nan` and `inf` included (History flags the run as
diverging); a line prefix (`[rankN]:`, `stderr: `, a viewer's `[1234] ` line number) is stripped before a
failure is read, and text glued to the end of a tqdm frame (torchrun's `[rank1]: Traceback`,
LlamaBoard's echo) is read as its own line.

Every numeric value of a metric dict is kept under its own name: loss, learning_rate (Point.lr),
grad_norm and epoch on the Point, every other one in Point.metrics (DPO/ORPO/SimPO's `rewards/chosen`,
`rewards/rejected`, `rewards/accuracies`, `rewards/margins`, `logps/...`, `logits/...`, `sft_loss`,
`odds_ratio_loss`; KTO's `kl`; PPO's `reward`; `num_input_tokens_seen`, ...), and those of an
evaluation dict in Eval.metrics (`eval_rewards/accuracies`, reward modelling's `eval_accuracy`).

Steps: a metric dict carries none. transformers prints it between clearing and redrawing the progress
bar, so its step is the one of the next training progress frame, and points wait for that frame; a dict
that names its `step` has it. A log without any training frame (tqdm disabled, output piped through
another tool, LlamaBoard's running_log.txt, an excerpt) numbers its points in logging order, 1, 2, ...
(each is given its number when the next dict of another epoch arrives, or at the end: LlamaBoard's echo
and the dict under it are one event). A dict still waiting when a log
that had frames ends (an excerpt, or a run killed after a logging step) has the last frame's step, unless a
point has it already (then its own frame is lost, and its step unknown). A dict glued to a frame in one segment (LlamaBoard's echo, printed
while the bar shows its step) has that frame's step, and so has the metric dict printed right after it
(the same event): a pasted excerpt, where the redrawn frame that follows it is lost, keeps its steps.
Of the training frames of a block, only the last becomes a Progress record (a bar redraws itself: the
newest frame is all a reader needs, and a long log holds millions).

Blocks of whole lines arrive as bytes. Lines made only of tqdm frames and the standard metric dict,
nearly all of a long log, go through the C scanner (lftop.logs._fastlog, built at install where a
compiler is found), which gives their points as Rows (columns, no object a point) and skips lines
holding none of the tokens this parser acts on; every other line, or every line without it, goes
through the Python parser here, which finds what it needs with one regular-expression scan per block.
Both give the same records (records.flat makes Rows Points).
"""

from __future__ import annotations

import re
import sys
from array import array

from lftop.logs import failures
from lftop.logs.jsonl import clock_seconds
from lftop.logs.records import Eval, Fact, Failure, Point, Progress, Record, Rows, Summary
from lftop.logs.text import clean, fastlog

_HOT = re.compile(r"\{'|%\||\*\*\*\*\* train metrics \*\*\*\*\*")  # literal starts: a fast scan
_DICT = re.compile(r"\{'[^{}\n]*\}")
_FRAME = re.compile(r"\d+%\|[^|\n]*\| *(?P<n>\d+)/(?P<total>\d+) *\[[\d:]+<(?P<rem>[\d:?]+)"
                    r"(?:,\s*(?:(?P<rate>[\d.]+)(?P<unit>it/s|s/it)|\?it/s))?")
_GLUED = re.compile(r"(?:\[\d+\] ?|> )?[^%|\n\r]*?[ \t]*\d+%\|[^|\n\r]*\|[^\[\n\r]*\[[^\]\n\r]*\]")  # a frame
_FACT_WORDS = ("Process rank: ", "trainable params: ", "Resuming training from", "Loading model from",
               "Total optimization steps", "Total training steps", "distributed tasks",
               "Continuing training from global step")
_RARE_WORDS = _FACT_WORDS + ("rror", "out of memory", "NCCL", "nccl", "Traceback", "exitcode", "SIGKILL", "Killed",
                             "CUBLAS", "Exception", "Interrupt", "Watchdog caught collective", "exits with return code",
                             "death signal, shutting down")
_RARE = re.compile("|".join(re.escape(w) for w in _RARE_WORDS))
TOKENS = ("{'", "%|", "*****") + _RARE_WORDS  # a line holding none of these yields no record and changes no state
_PAIR = re.compile(r"'([^'\n]+)': (?:'([^'\n]*)'|([^,}'\s]+))")
_FACTS = (
    ("world_size", re.compile(r"Process rank: \d+, world size: (\d+)")),
    ("device", re.compile(r"Process rank: \d+, world size: \d+, device: ([^,\s]+)")),
    ("trainable_params", re.compile(r"trainable params: (\d[\d,]*)")),
    ("all_params", re.compile(r"trainable params: [\d,]+ \|\| all params: (\d[\d,]*)")),
    ("resumed_from", re.compile(r"(?:Resuming training from (?!checkpoint with)|Loading model from )(\S+?)\.?$")),
    ("resumed_step", re.compile(r"(?:Resuming training from checkpoint with epoch \d+ and global step|"
                                r"Continuing training from global step) (\d+)")),
    ("total_steps", re.compile(r"Total (?:optimization|training) steps = (\d[\d,]*)")),
    ("nproc", re.compile(r"Initializing (\d+) distributed tasks")),
)
_METRIC_ROW = re.compile(r"[ \t]+(\w+)[ \t]+=[ \t]+(\S+)[ \t]*(?:\n|$)")
_PREFIX = re.compile(r"\[\d+\] ?|[ \t]*\d+\t|std(?:out|err): ?|\[(?:rank|default)(\d+)\]:\s?")
_FRAME_HEAD = re.compile(r"[ \t]*\d+%\|[^|\n\r]*\|[^\[\n\r]*\[[\d:]+<[\d:?]+,?[^\[\]\n\r]*?(?:it/s|s/it|/s)\]?")
_HOST = re.compile(r"(?!wandb:)([\w.-]+): (?=\S)")  # pdsh's `gpu004: ` before each line of a multi-node DeepSpeed run
_DESCRIBED = re.compile(r"[^\r\n]*(?: |\(num_proc=\d+\))[^\r\n]*:|Map:|Filter:")  # a described bar's text
_POINT_KEYS = frozenset(("loss", "learning_rate", "grad_norm", "epoch"))
_NOT_EVAL_METRICS = frozenset(("eval_loss", "epoch"))

if fastlog is not None:
    fastlog.tokens(tuple(t.encode() for t in TOKENS))


def _number(value: object) -> float | None:
    try:
        return float(value)  # 5.x prints '0.0003333'; 4.x prints floats; both print nan and inf as such
    except (TypeError, ValueError):
        return None


def _int(text: str) -> int | None:
    """int(text), or None where Python refuses it (over 4300 digits)."""
    try:
        return int(text)
    except ValueError:
        return None


def _metrics(values: dict[str, str], skip: frozenset[str]) -> dict[str, float] | None:
    """The numeric values of a metric dict but those in `skip`, by name; None when there are none."""
    found = {k: v for k, raw in values.items() if k not in skip and (v := _number(raw)) is not None}
    return found or None


def _same_epoch(a: dict, b: dict) -> bool:
    """Two dicts of one logging event: epochs equal to LlamaBoard's echo's two decimals."""
    x, y = _number(a.get("epoch")), _number(b.get("epoch"))
    return x is not None and y is not None and abs(x - y) <= 0.005


def strip_prefix(segment: str) -> tuple[str, str]:
    """(rank, text) of a line behind its prefixes: `[rankN]:` (rank "N"), `[default0]:`, `stderr: `,
    a viewer's `[1234] ` or `  1234<TAB>`; rank is "" when none names one."""
    rank, pos = "", 0
    while (m := _PREFIX.match(segment, pos)) and m.end() > pos:
        rank, pos = m.group(1) if m.group(1) is not None else rank, m.end()
    return rank, segment[pos:]


def _segment(text: str, start: int, end: int) -> tuple[int, int]:
    """Bounds of the carriage-return segment of its line around text[start:end]."""
    left = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
    stops = [i for i in (text.find("\n", end), text.find("\r", end)) if i != -1]
    return left, min(stops) if stops else len(text)


class LogParser:
    """Feed blocks of complete lines in order; `finish()` at the end of a log that will not grow."""

    def __init__(self) -> None:
        self.train_total: int | None = None
        self._last_step: int | None = None  # the last training frame's step; None until one is seen
        self._ordinal = 0  # points numbered in logging order, in a log without frames
        self._pending: list[tuple[dict, int]] = []  # metric dicts (raw values) waiting for their step, with line
        self._event: tuple[int, int] | None = None  # (step, line) of a dict glued to a frame: the next dict's too
        self._frame: tuple[int, int, int, float | None, float | None] | None = None  # line, step, total, rate, eta
        self._traceback: dict[str, int] = {}  # rank prefix -> line where its traceback started
        self._metrics: dict | None = None
        self._metrics_line = 0
        self._point_step: int | None = None  # the step and epoch of the last point given
        self._point_epoch: float | None = None
        self._signalled: set[str] = set()  # pids a signal failure named
        self.next_line = 1  # the number of the line after the last block fed

    def feed_block(self, first: int, data: bytes | bytearray | memoryview | str) -> list[Record]:
        """Complete lines joined by newlines, the first being line `first`: bytes as read, or text."""
        out: list[Record] = []
        if isinstance(data, str) or fastlog is None:
            text = data if isinstance(data, str) else clean(data)
            self._scan(first, text, out)
            self.next_line = first + text.count("\n") + 1
        else:
            self.next_line = self._scan_fast(first, data, out)
        if self._frame is not None:
            self._emit_frame(out)
        for record in reversed(out):
            if type(record) is Point:
                self._point_step, self._point_epoch = record.step, record.epoch
                break
            if type(record) is Rows and record.steps:
                self._point_step = int.from_bytes(record.steps[-8:], sys.byteorder, signed=True)
                self._point_epoch = array("d", record.values[-8:])[0]
                break
        return out

    def _c_can_go_on(self) -> bool:
        """The C scanner holds at most one waiting dict, of the standard four values only."""
        if self._metrics is not None or len(self._pending) > 1 or self._event is not None:
            return False
        return not self._pending or _POINT_KEYS.issuperset(self._pending[0][0])

    def _scan_fast(self, line: int, data: bytes | bytearray | memoryview, out: list[Record]) -> int:
        """The C scanner takes the lines it knows and skips those without a token; each line it stops at
        goes through `_scan`. Returns the number of the line after the block."""
        pos, end = 0, len(data)
        while pos <= end:
            if self._c_can_go_on():
                pos, line, self._last_step, self._frame, pending, rows = fastlog.scan(
                    data, pos, line, self.train_total, self._last_step, self._frame,
                    self._pending[0] if self._pending else None, clock_seconds)
                self._pending = [pending] if pending is not None else []
                if rows is not None:
                    out.append(Rows(*rows))
                if pos > end:
                    break
            stop = fastlog.line_end(data, pos)
            self._scan(line, clean(data[pos:stop]), out)
            pos, line = stop + 1, line + 1
        return line

    def _scan(self, first: int, text: str, out: list[Record]) -> None:
        """The Python parser over complete lines joined by newlines; the last frame stays open."""
        pos = counted = 0
        line = first
        if self._metrics is not None:
            pos = counted = self._metric_rows(text, 0, out)
            line += text.count("\n", 0, pos)
        # facts and failures are rare: look for them only in blocks that hold one of their words
        rare = list(_RARE.finditer(text)) if any(w in text for w in _RARE_WORDS) else []
        ri = 0
        while True:
            m = _HOT.search(text, pos)
            hot_start = m.start() if m else len(text)
            consumed = False
            while ri < len(rare) and rare[ri].start() < hot_start:
                r = rare[ri]
                ri += 1
                if r.start() < pos:
                    continue
                line += text.count("\n", counted, r.start())
                counted = r.start()
                left, right = _segment(text, r.start(), r.end())
                while (glued := _GLUED.match(text, left, r.start())) is not None:
                    left = glued.end()  # text glued to tqdm frames: the frames were read as frames
                if r.group() in _FACT_WORDS:
                    self._facts(line, text[left:right], out)
                else:
                    self._failure(line, text[left:right], out)
                pos, consumed = max(right, r.end()), True
            if consumed:
                continue
            if m is None:
                break
            start = m.start()
            line += text.count("\n", counted, start)
            counted = start
            token = m.group()
            if token == "{'":
                d = _DICT.match(text, start)
                if d is not None:
                    left = max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1
                    self._dict(line, d.group(), out, _GLUED.match(text, left, start) is not None)
                pos = d.end() if d is not None else m.end()
            elif token == "%|":
                pos = self._frames(text, start, line, ri < len(rare) and rare[ri], out)
            else:
                self._metrics, self._metrics_line = {}, line
                end = text.find("\n", m.end())
                if end == -1:
                    break
                pos = self._metric_rows(text, end + 1, out)
                line += text.count("\n", counted, pos)
                counted = pos

    def _frame_at(self, text: str, bar: int) -> re.Match | None:
        """The tqdm frame whose `%|` is at `bar`, starting at its percentage digits."""
        left = bar
        while left > 0 and text[left - 1].isdigit():
            left -= 1
        if left == bar or self._described(text, left):
            return None
        return _FRAME.match(text, left)

    @staticmethod
    def _described(text: str, left: int) -> bool:
        """A bar with a description (`Running tokenizer on dataset:  9%|`, `Loading checkpoint shards:`, `Map:`):
        data loading, never the trainer's, whose bar has none. A rank or host prefix is not one."""
        k = left
        while k > 0 and text[k - 1] == " ":
            k -= 1
        if k == 0 or text[k - 1] != ":":
            return False
        start = max(text.rfind("\n", 0, k), text.rfind("\r", 0, k)) + 1
        desc = strip_prefix(text[start:k])[1]
        if host := _HOST.match(desc):
            desc = strip_prefix(desc[host.end():])[1]
        return not desc.endswith("]:") and _DESCRIBED.fullmatch(desc) is not None

    def _frames(self, text: str, bar: int, line: int, next_rare, out: list[Record]) -> int:
        """Handle the frame at `bar`, then only the last train frame before the next thing on its line.

        Frames between are superseded (a bar redraws itself), so skipping them changes no record.
        """
        frame = self._frame_at(text, bar)
        if frame is None:
            return bar + 2
        self._on_frame(line, frame, out)
        pos = frame.end()
        eol = text.find("\n", pos)
        stop = len(text) if eol == -1 else eol
        for other in (text.find("{'", pos, stop), text.find("*****", pos, stop)):
            if other != -1:
                stop = min(stop, other)
        if next_rare and next_rare.start() < stop:
            stop = max(pos, next_rare.start())
        k = stop
        while (k := text.rfind("%|", pos, k)) != -1:
            last = self._frame_at(text, k)
            if last is not None and last.end() <= stop and (
                    self.train_total is None or _int(last.group("total")) == self.train_total):
                self._on_frame(line, last, out)
                break
        return stop

    def _metric_rows(self, text: str, pos: int, out: list[Record]) -> int:
        """Consume `  key = value` rows after the metrics header; returns where they end.

        The first line that is not a row, an empty one included, ends them; rows reaching the end of
        the block may go on in the next one, so the block stays open.
        """
        while pos < len(text) and (row := _METRIC_ROW.match(text, pos)):
            self._metrics[row.group(1)] = row.group(2)
            pos = row.end()
        if pos < len(text) or not text or text[pos - 1] == "\n":  # a line follows the rows
            out.append(Summary(self._metrics, self._metrics_line))
            self._metrics = None
        return pos

    def _on_frame(self, line: int, m: re.Match, out: list[Record]) -> None:
        step, total = _int(m.group("n")), _int(m.group("total"))
        if step is None or total is None or (self.train_total is not None and total != self.train_total):
            return  # an evaluation or data-loading bar, or digits Python will not read
        rate = _number(m.group("rate"))
        if rate is not None and m.group("unit") == "s/it":
            rate = 1 / rate if rate else None
        try:
            eta = (total - step) / rate if rate else clock_seconds(m.group("rem"))
        except OverflowError:  # a count beyond a float
            eta = None
        self._last_step, self._event = step, None
        self._frame = (line, step, total, rate, eta)
        self._release(step, out)

    def _emit_frame(self, out: list[Record]) -> None:
        line, step, total, rate, eta = self._frame
        out.append(Progress(step, total, rate, eta, line))
        self._frame = None

    def _release(self, step: int | None, out: list[Record]) -> None:
        """Give waiting points their step: the frame's for the last, by epoch ratio for earlier ones;
        in a log without frames, their logging order."""
        if not self._pending:
            return
        last_epoch = _number(self._pending[-1][0].get("epoch"))
        for i, (values, number) in enumerate(self._pending):
            point_step = step
            if self._last_step is None:
                self._ordinal += 1
                point_step = self._ordinal
            elif step is not None and i < len(self._pending) - 1:
                epoch = _number(values.get("epoch"))
                point_step = round(step * epoch / last_epoch) if epoch and last_epoch else None
            self._point(point_step, values, number, out)
        self._pending = []

    @staticmethod
    def _point(step: int | None, values: dict, line: int, out: list[Record]) -> None:
        out.append(Point(step, _number(values.get("loss")), _number(values.get("learning_rate")),
                         _number(values.get("grad_norm")), _number(values.get("epoch")), line,
                         _metrics(values, _POINT_KEYS)))

    def _dict(self, line: int, text: str, out: list[Record], glued: bool = False) -> None:
        values = {key: quoted if bare is None or bare == "" else bare for key, quoted, bare in _PAIR.findall(text)}
        if self._last_step is None and self._pending and not (  # no frames: the waiting dict's number is the next,
                "loss" in values and _same_epoch(values, self._pending[-1][0])):  # unless the same event
            self._release(None, out)
        event, self._event = self._event, None
        if "loss" in values:
            if _number(values["loss"]) is None:
                return
            step = _int(values["step"]) if "step" in values else None
            if step is None and glued and self._last_step is not None:
                step, self._event = self._last_step, (self._last_step, line)
            elif step is None and event is not None and line <= event[1] + 1:
                step = event[0]
            if step is not None:
                self._point(step, values, line, out)
            else:
                self._pending.append((values, line))
        elif "eval_loss" in values and (loss := _number(values["eval_loss"])) is not None:
            step = self._last_step if self._last_step is not None else self._ordinal or None
            out.append(Eval(step, loss, _number(values.get("epoch")), line, _metrics(values, _NOT_EVAL_METRICS)))
        elif "train_runtime" in values or "train_loss" in values:
            self._release(self._last_step, out)
            out.append(Summary(values, line))

    def _facts(self, line: int, segment: str, out: list[Record]) -> None:
        for key, pattern in _FACTS:
            if m := pattern.search(segment):
                value = m.group(1).replace(",", "")
                if key == "total_steps":
                    if (total := _int(value)) is None:
                        continue
                    self.train_total = total
                out.append(Fact(key, value, line))

    def _failure(self, line: int, segment: str, out: list[Record]) -> None:
        key, body = strip_prefix(segment)
        if head := _FRAME_HEAD.match(body):  # a frame the text is glued inside (`[00:00<?, ?it/s[E ...NCCL`)
            body = body[head.end():]
        if (host := _HOST.match(body)) and not failures.EXCEPTION.match(body.strip()):
            key, body = key or host.group(1), body[host.end():]
        if body.startswith("Traceback (most recent call last)"):
            self._traceback[key] = line
            return
        if failures.KILLED.search(body):
            out.append(Failure("killed", body.strip()[-500:], line))
            return
        if failures.SIGNALLED.search(body):
            pid = named.group(1) if (named := failures.PID.search(body)) else None
            if pid is None or pid not in self._signalled:  # torchrun names a rank's signal twice
                out.append(Failure("signal", body.strip()[-500:], line))
            if pid is not None:
                self._signalled.add(pid)
            return
        if body[:1].isspace() and key in self._traceback:
            return  # inside a traceback, a C++ abort or torchrun's failure block: what they repeat
        exception = failures.EXCEPTION.match(body.strip())
        if failures.OOM.search(body):
            out.append(Failure("oom", failures.oom_message(body), line))
        elif failures.NCCL.search(body):
            out.append(Failure("nccl", body.strip()[:500], line))
        elif exception and (key in self._traceback or "ChildFailedError" in body):
            out.append(Failure("traceback", body.strip()[:500], line))
        elif exit_line := failures.LAUNCHER_EXIT.search(body):
            out.append(Failure("exit", f"launcher: a process {exit_line.group()}", line))
        else:
            return
        if body.startswith("terminate called after throwing") or "ChildFailedError" in body:
            self._traceback[key] = line  # the indented lines under it repeat what it says
        else:
            self._traceback.pop(key, None)

    def _epoch_agrees(self, values: dict, step: int) -> bool:
        """Whether `step` fits the dict's epoch, by the epoch of the last point (tqdm redraws at most ten times a
        second: on a fast run the last frame may be steps behind the dict); unknown epochs agree."""
        epoch = _number(values.get("epoch"))
        if not (epoch and self._point_epoch and self._point_step):
            return True
        return abs(self._point_step * epoch / self._point_epoch - step) < max(1.0, 0.005 * step)  # epochs are rounded

    def finish(self) -> list[Record]:
        out: list[Record] = []
        if self._metrics is not None:
            out.append(Summary(self._metrics, self._metrics_line))
            self._metrics = None
        if len(self._pending) == 1 and self._last_step is not None and self._point_step != self._last_step \
                and self._epoch_agrees(self._pending[0][0], self._last_step):
            self._release(self._last_step, out)  # a log cut after a logging step: the frame before it was its step's
        else:
            self._release(None, out)  # numbered in a log without frames; with frames, a dict's step is unknown
        return out
