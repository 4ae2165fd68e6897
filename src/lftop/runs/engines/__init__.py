"""Where a run executes, behind one small protocol: `local` (setsid + supervisor, torchrun), `slurm`.

An engine starts the run that a run directory describes (run.json's `command`, `env`, `cwd`, `nproc`), asks it to
pause, stops it, and says whether anything of it is still alive and where. The run directory stays the record;
an engine keeps nothing in memory, so any lftop can ask any engine about any run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lftop.runs.process import ProcessRef
    from lftop.runs.rundir import RunDir

NAMES = ("local", "slurm")


@dataclass(frozen=True)
class Node:
    """A machine a run uses, and the GPU indices it holds there when known."""

    name: str
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Live:
    """What an engine sees of a run now."""

    alive: bool  # some process of the run (or its scheduler job) may still be running or waiting
    process: ProcessRef | None = None  # the verified local root process, if any
    job: str | None = None  # the scheduler's job id
    detail: str | None = None  # the scheduler's word for the job: "PENDING (Resources)", "TIMEOUT", ...
    nodes: tuple[Node, ...] = ()


class Engine(Protocol):
    name: str

    def start(self, run: RunDir) -> None:
        """Start the run described by run.json, detached; record what identifies it (pid, job id) in run.json."""

    def request_pause(self, run: RunDir) -> None:
        """Ask the run to checkpoint at its next step end and exit."""

    def stop(self, run: RunDir, grace: float) -> int:
        """End everything of the run (SIGTERM, SIGKILL after `grace` s; or cancel the job); how many were ended."""

    def live(self, run: RunDir) -> Live:
        """Whether anything of the run is alive, and where."""


class UnknownEngine(ValueError):
    pass


def get(name: str | None) -> Engine:
    """The engine called `name` (None: local)."""
    if name in (None, "local"):
        from lftop.runs.engines.local import LocalEngine

        return LocalEngine()
    if name == "slurm":
        from lftop.runs.engines.slurm import SlurmEngine

        return SlurmEngine()
    raise UnknownEngine(f"unknown engine {name!r}: choose one of {', '.join(NAMES)}")
