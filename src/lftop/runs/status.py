"""A run's state as any lftop sees it: derived from its directory, its engine and the live process table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lftop.logs.follower import last_lines
from lftop.logs.jsonl import tail_progress
from lftop.runs import checkpoints, engines
from lftop.runs.engines import Live, Node
from lftop.runs.process import ProcessRef
from lftop.runs.rundir import RunDir
from lftop.runs.state import FINAL, RunState, shown


@dataclass(frozen=True)
class RunStatus:
    id: str
    state: RunState
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
    engine: str = "local"
    job: str | None = None
    nodes: tuple[Node, ...] = ()
    detail: str | None = None
    owner: str | None = None  # the user whose run it is
    problem: str | None = None  # why lftop only reads this run (damaged, or another user's)
    stalled_for: float | None = None  # seconds since the last step, while the run is flagged stalled
    alerts: tuple[str, ...] = ()  # what a user should hear about now: stalled, memory near capacity
    external: bool = False  # a run lftop did not start, recorded when lftop stopped it

    @property
    def stalled(self) -> bool:
        return self.stalled_for is not None

    def to_dict(self) -> dict:
        return {
            "run": self.id, "state": str(self.state), "step": self.step, "total_steps": self.total_steps,
            "loss": self.loss, "checkpoints": self.checkpoints, "pid": self.process.pid if self.process else None,
            "alive": self.alive, "output_dir": self.output_dir, "log": self.log, "gpus": self.gpus,
            "nproc": self.nproc, "created": self.created, "profile": self.profile, "failure": self.failure,
            "log_tail": self.log_tail, "engine": self.engine, "job": self.job, "detail": self.detail,
            "nodes": [{"name": n.name, "gpus": list(n.gpus)} for n in self.nodes],
            "owner": self.owner, "problem": self.problem, "external": self.external, "stalled": self.stalled,
            "since_last_step": None if self.stalled_for is None else round(self.stalled_for, 1),
            "alerts": list(self.alerts),
        }


def _log_tail(path: Path, count: int = 10) -> list[str]:
    """The last non-empty lines of a log, tqdm frames split apart."""
    lines = last_lines(path, 4 * count, window=16384)
    return [seg for line in lines for seg in line.split("\r") if seg.strip()][-count:]


def _readable(run: RunDir) -> bool:
    """Whether run.json's fields can be read as the engine expects (another user's may still be; a damaged
    one is shown as not alive rather than read wrongly)."""
    return not (run.problem() or "").startswith("run.json is damaged")


def _settled(run: RunDir, engine: engines.Engine) -> tuple[RunState, Live]:
    """The state to show and what the engine sees, read so that no ending between the two reads is missed:
    a run that writes its final state and then exits is read as alive-and-final, then gone-and-final."""
    recorded = run.recorded_state() or RunState.STARTING
    live = engine.live(run) if _readable(run) else Live(alive=False)
    if not live.alive and recorded not in FINAL:
        recorded = run.recorded_state() or RunState.STARTING  # it may have finished between the two reads
    started = live.process is not None or live.job is not None
    return shown(recorded, live.alive, run.control() == "pause", started), live


def _owner(path: Path) -> str | None:
    import pwd

    try:
        uid = path.lstat().st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


SEGMENT = ("launched", "resumed", "started", "job started")  # a Slurm run's next job starts afresh too


def _alerts(events: list[dict], state: RunState) -> tuple[float | None, tuple[str, ...]]:
    """Since the run's current segment began: the seconds since its last step when it is flagged stalled, and
    its alerts (stalled; reserved memory past 95% of a GPU)."""
    if state not in (RunState.STARTING, RunState.RUNNING, RunState.PAUSING):
        return None, ()
    start = max((i for i, e in enumerate(events) if e.get("event") in SEGMENT), default=-1)
    current = events[start + 1:]
    stall = next((e for e in reversed(current) if e.get("event") in ("stalled", "stall cleared")), None)
    alerts = []
    stalled_for = None
    if stall and stall["event"] == "stalled" and isinstance(stall.get("last_step_time"), (int, float)):
        stalled_for = max(0.0, time.time() - stall["last_step_time"])
        alerts.append(f"stalled: no step for {stalled_for / 60:.0f} min" if stalled_for >= 120
                      else f"stalled: no step for {stalled_for:.0f} s")
    near = next((e for e in current if e.get("event") == "memory near capacity"), None)
    if near and isinstance(near.get("reserved"), int) and isinstance(near.get("total"), int) and near["total"] > 0:
        alerts.append(f"GPU memory {100 * near['reserved'] / near['total']:.0f}% reserved: an OOM may be ahead")
    return stalled_for, tuple(alerts)


def _queue_place(run: RunDir) -> str:
    """A queued run's place and what it waits for, as its waiter last wrote them."""
    try:
        place = json.loads((run.path / "queue").read_bytes())
        return f"#{int(place['position'])} in queue: {place['waiting_for']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "in queue"


def status(run: RunDir) -> RunStatus:
    """The run as any lftop shows it; a damaged or unreadable run gets its problem named, never an exception."""
    meta = run.meta()
    problem = run.problem()
    try:
        engine = engines.get(meta.get("engine") if isinstance(meta.get("engine"), str) else None)
    except engines.UnknownEngine as exc:
        engine, problem = engines.get(None), problem or f"run.json: {exc}"
    if not meta:
        return RunStatus(id=run.id, state=RunState.UNKNOWN, alive=False, process=None, step=None, total_steps=None,
                         loss=None, checkpoints=[], output_dir="", log=str(run.log), gpus=None, nproc=1, created=None,
                         profile="", owner=_owner(run.path), problem=problem)
    state, live = _settled(run, engine)
    detail = live.detail or (_queue_place(run) if state == RunState.QUEUED else None)
    recorded_dir = meta.get("output_dir")
    output_dir = Path(recorded_dir) if isinstance(recorded_dir, str) and Path(recorded_dir).is_absolute() \
        else run.path / "output"
    progress = tail_progress(output_dir / "trainer_log.jsonl")
    events = run.events()
    failure = next((e for e in reversed(events) if e.get("event") == "failed"), None) \
        if state == RunState.FAILED else None
    nproc = meta.get("nproc")
    stalled_for, alerts = _alerts(events, state)
    return RunStatus(
        id=run.id, state=state, alive=live.alive, process=live.process,
        step=progress.step, total_steps=progress.total, loss=progress.loss,
        checkpoints=[step for step, _ in checkpoints.own(events, output_dir)],
        output_dir=str(output_dir), log=str(run.log), gpus=meta.get("gpus") if isinstance(meta.get("gpus"), str) else None,
        nproc=nproc if type(nproc) is int and nproc > 0 else 1,
        created=meta.get("created") if isinstance(meta.get("created"), (int, float)) else None,
        profile=str(meta.get("profile", "")), failure=failure,
        log_tail=_log_tail(run.log) if state in (RunState.LOST, RunState.FAILED) else [],
        engine=engine.name, job=live.job, nodes=live.nodes, detail=detail, owner=_owner(run.path),
        problem=problem, stalled_for=stalled_for, alerts=alerts,
        external=meta.get("external") is True,
    )


def all_statuses(runs: list[RunDir]) -> list[RunStatus]:
    """Every run's status; one that cannot be read for a reason no check foresaw is listed with that reason,
    and never hides the others."""
    found = []
    for run in runs:
        try:
            found.append(status(run))
        except Exception as exc:  # noqa: BLE001 -- one bad run directory must not take the list down
            found.append(RunStatus(id=run.id, state=RunState.UNKNOWN, alive=False, process=None, step=None,
                                   total_steps=None, loss=None, checkpoints=[], output_dir="", log=str(run.log),
                                   gpus=None, nproc=1, created=None, profile="",
                                   problem=f"cannot be read: {type(exc).__name__}: {exc}"))
    return found
