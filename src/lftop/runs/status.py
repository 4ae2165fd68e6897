"""A run's state as any lftop sees it: derived from its directory and the live process table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lftop.logs.follower import last_lines
from lftop.logs.jsonl import tail_progress
from lftop.runs import checkpoints
from lftop.runs.process import ProcessRef
from lftop.runs.rundir import ACTIVE, RunDir


@dataclass(frozen=True)
class RunStatus:
    id: str
    state: str
    alive: bool
    process: ProcessRef | None
    step: int | None
    total_steps: int | None
    loss: float | None
    checkpoints: list[int]
    output_dir: str
    log: str
    gpus: str | None
    nproc: int
    created: float | None
    profile: str
    failure: dict | None = None
    log_tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "run": self.id, "state": self.state, "step": self.step, "total_steps": self.total_steps, "loss": self.loss,
            "checkpoints": self.checkpoints, "pid": self.process.pid if self.process else None,
            "alive": self.alive, "output_dir": self.output_dir, "log": self.log, "gpus": self.gpus,
            "nproc": self.nproc, "created": self.created, "profile": self.profile, "failure": self.failure,
            "log_tail": self.log_tail,
        }


def _log_tail(path: Path, count: int = 10) -> list[str]:
    """The last non-empty lines of a log, tqdm frames split apart."""
    lines = last_lines(path, 4 * count, window=16384)
    return [seg for line in lines for seg in line.split("\r") if seg.strip()][-count:]


def status(run: RunDir) -> RunStatus:
    meta = run.meta()
    ref = run.process_ref()
    alive = ref.alive() if ref else False
    state = run.state()
    if alive and state not in ACTIVE:
        alive = ref.alive()  # it may have ended between the two reads: `stop` writes its state once the tree is gone
    if state in ACTIVE and not alive:
        state = run.state()  # it may have finished between the two reads
        if state in ACTIVE:
            state = "starting" if ref is None else "lost"
    elif (state == "running" and run.control() == "pause") or (state == "paused" and alive):
        state = "pausing"  # paused means no process is left holding the GPUs
    output_dir = Path(meta.get("output_dir", ""))
    progress = tail_progress(output_dir / "trainer_log.jsonl")
    failure = next((e for e in reversed(run.events()) if e.get("event") == "failed"), None) if state == "failed" else None
    return RunStatus(
        id=run.id, state=state, alive=alive, process=ref,
        step=progress.step, total_steps=progress.total, loss=progress.loss,
        checkpoints=[step for step, _ in checkpoints.complete(output_dir)],
        output_dir=str(output_dir), log=str(run.log), gpus=meta.get("gpus"), nproc=meta.get("nproc", 1),
        created=meta.get("created"), profile=meta.get("profile", ""), failure=failure,
        log_tail=_log_tail(run.log) if state in ("lost", "failed") else [],
    )
