"""Runs side by side: the LLaMA-Factory arguments that differ, and loss and eval loss at the steps all runs logged.

Each run's arguments come from its run.json, its history from its output_dir's trainer_log.jsonl (after a resume,
a step logged again counts with its newest value).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lftop.logs.jsonl import parse_line
from lftop.logs.records import Eval, Point
from lftop.runs.rundir import RunDir

_MISSING = object()


@dataclass(frozen=True)
class History:
    loss: dict[int, float]
    eval_loss: dict[int, float]


@dataclass(frozen=True)
class Comparison:
    runs: list[str]
    args: dict[str, list[object]]  # each differing argument: its value per run (None where a run does not set it)
    steps: list[dict]  # {"step", "loss": [per run], "eval_loss": [per run]} at each step every run logged

    def to_dict(self) -> dict:
        return {"runs": self.runs, "args": self.args, "steps": self.steps}


def history(output_dir: Path) -> History:
    """Loss and eval loss by step from `output_dir`/trainer_log.jsonl; empty when there is none."""
    loss: dict[int, float] = {}
    eval_loss: dict[int, float] = {}
    try:
        with open(output_dir / "trainer_log.jsonl", "rb") as f:
            for number, raw in enumerate(f, 1):
                for record in parse_line(number, raw.decode("utf-8", "replace")):
                    if isinstance(record, Point) and record.step is not None and record.loss is not None:
                        loss[record.step] = record.loss
                    elif isinstance(record, Eval) and record.step is not None:
                        eval_loss[record.step] = record.eval_loss
    except OSError:
        pass
    return History(loss, eval_loss)


def differing(args: list[dict]) -> dict[str, list[object]]:
    """The keys whose values are not the same in every one of `args`, in first-seen order."""
    keys = list(dict.fromkeys(k for a in args for k in a))
    found = {}
    for key in keys:
        values = [a.get(key, _MISSING) for a in args]
        if any(v != values[0] for v in values[1:]):
            found[key] = [None if v is _MISSING else v for v in values]
    return found


def _output_dir(run: RunDir, meta: dict) -> Path:
    recorded = meta.get("output_dir")
    return Path(recorded) if isinstance(recorded, str) and Path(recorded).is_absolute() else run.path / "output"


def compare(runs: list[RunDir]) -> Comparison:
    """The runs' differing arguments and their loss and eval loss at the steps all of them logged."""
    metas = [run.meta() for run in runs]
    args = [m["args"] if isinstance(m.get("args"), dict) else {} for m in metas]
    histories = [history(_output_dir(run, meta)) for run, meta in zip(runs, metas, strict=True)]
    logged = [set(h.loss) | set(h.eval_loss) for h in histories]
    common = sorted(set.intersection(*logged)) if logged else []
    steps = [{"step": s, "loss": [h.loss.get(s) for h in histories],
              "eval_loss": [h.eval_loss.get(s) for h in histories]} for s in common]
    return Comparison([run.id for run in runs], differing(args), steps)
