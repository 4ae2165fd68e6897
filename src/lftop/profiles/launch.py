"""`[launch]`: where and how a run executes. `KEYS` is the one schema: each key's check, and `Launch` its values."""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from lftop.profiles.problems import shown

ENGINES = ("local", "slurm")
MAX_COUNT = 4096  # GPUs, ranks or nodes: more is a typo
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEVICE = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z-]+")  # CUDA_VISIBLE_DEVICES entries: indices or UUIDs


@dataclass(frozen=True)
class Launch:
    gpus: str | int | None = None  # CUDA_VISIBLE_DEVICES, "all", "" for the CPU, or a count of least-used GPUs
    python: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    nproc: int | None = None
    engine: str = "local"  # where the run executes: lftop.runs.engines
    nodes: int | None = None
    nproc_per_node: int | None = None
    gpus_per_node: int | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    sbatch: tuple[str, ...] = ()
    stall_after: float | None = None  # seconds without a new log line before a run counts as stalled


def _count(low: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {shown(value)}"
        if not low <= value <= MAX_COUNT:
            return f"{value} is out of range: {low} to {MAX_COUNT}"
        return None

    return check


def string(value: object) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {shown(value)}"


def _gpus(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return _count(1)(value)
    if not isinstance(value, str):
        return f'expected a device list like "0,1", "all", "" for the CPU, or a count of GPUs; got {shown(value)}'
    if value in ("", "all") or all(_DEVICE.fullmatch(d.strip()) for d in value.split(",")):
        return None
    return f'{shown(value)} is not a device list: GPU indices or UUIDs separated by commas, like "0,1"'


def _env(value: object) -> str | None:
    if not isinstance(value, dict):
        return f'expected a table of strings, like {{ HF_HUB_OFFLINE = "1" }}; got {shown(value)}'
    for name, setting in value.items():
        if not _ENV_NAME.fullmatch(name):
            return f"{name!r} is not a valid environment variable name (letters, digits and _, not first a digit)"
        if not isinstance(setting, str):
            return f'{name}: expected a string, got {shown(setting)}; quote it: {name} = "{setting}"'
    return None


def _engine(value: object) -> str | None:
    if value in ENGINES:
        return None
    return f"expected one of {', '.join(map(repr, ENGINES))}, got {shown(value)}"


def _sbatch(value: object) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None
    if isinstance(value, str):
        return (f'expected a list of strings, one option each, like ["--qos=high"]; a string is not split: '
                f"{shown(value)}")
    return f"expected a list of strings, got {shown(value)}"


def _seconds(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number of seconds, got {shown(value)}"
    if not (math.isfinite(value) and value > 0):
        return f"expected a finite number of seconds above 0, got {value}"
    return None


def check_python(value: object) -> str | None:
    """An interpreter that exists and is executable: a path (relative to where lftop runs) or a name on PATH.

    Whether it can import llamafactory is not checked: that imports torch, seconds per profile. An
    interpreter without it fails at its first line, and the run is recorded as failed with Python's own
    ModuleNotFoundError in its log (`lftop doctor --python PATH` checks it beforehand)."""
    if not isinstance(value, str) or not value:
        return f"expected the path of a Python interpreter, got {shown(value)}"
    hint = "; give the Python that has llamafactory installed (`which python` in its environment)"
    if os.sep not in value:
        return None if shutil.which(value) else f"{value}: not found on PATH{hint}"
    if not os.path.exists(value):
        return f"{value}: no such file{hint}"
    if os.path.isdir(value) or not os.access(value, os.X_OK):
        return f"{value}: not an executable file{hint}"
    return None


KEYS: dict[str, Callable[[object], str | None]] = {
    "gpus": _gpus,
    "nproc": _count(1),
    "python": check_python,
    "env": _env,
    "engine": _engine,
    "nodes": _count(1),
    "nproc_per_node": _count(1),
    "gpus_per_node": _count(0),
    "partition": string,
    "time": string,
    "account": string,
    "sbatch": _sbatch,
    "stall_after": _seconds,
}


def build(table: dict) -> Launch:
    """A Launch from a `[launch]` table every value of which passed its check in KEYS."""
    values = {k: v for k, v in table.items() if k in KEYS}
    if "env" in values:
        values["env"] = dict(values["env"])
    if "sbatch" in values:
        values["sbatch"] = tuple(values["sbatch"])
    return Launch(**values)
