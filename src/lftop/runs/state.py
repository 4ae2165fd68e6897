"""A run's states, and the one rule that says which of them a reader may show."""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    QUEUED = "queued"  # waiting (in its own detached process) until its GPUs have room
    STARTING = "starting"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHING = "finishing"  # completed or failed is written, a process of the run is still exiting
    COMPLETED = "completed"
    FAILED = "failed"
    LOST = "lost"  # its processes are gone and nothing recorded why
    UNKNOWN = "unknown"  # its directory cannot be read (another user's, or damaged): see the run's problem

    @classmethod
    def parse(cls, word: str) -> RunState | None:
        try:
            return cls(word)
        except ValueError:
            return None


ACTIVE = frozenset({RunState.QUEUED, RunState.STARTING, RunState.RUNNING, RunState.PAUSING})
FINAL = frozenset({RunState.PAUSED, RunState.COMPLETED, RunState.FAILED, RunState.STOPPED})
ENDED = FINAL | {RunState.LOST}
# A final state is shown only once the run's processes are gone; until then, what it is becoming.
SETTLING = {RunState.PAUSED: RunState.PAUSING, RunState.STOPPED: RunState.STOPPING,
            RunState.COMPLETED: RunState.FINISHING, RunState.FAILED: RunState.FINISHING}


def shown(recorded: RunState, alive: bool, pause_requested: bool, started: bool) -> RunState:
    """What a reader shows for a run whose directory says `recorded` and whose processes are `alive`.

    The one rule for the CLI, the app and the supervisor: paused, stopped, completed and failed only when no
    process of the run is left; an active state with no process left is lost (or still starting when no process
    was ever recorded)."""
    if recorded in FINAL:
        return SETTLING[recorded] if alive else recorded
    if recorded in ACTIVE and not alive:
        return RunState.LOST if started else RunState.STARTING
    if recorded == RunState.RUNNING and pause_requested:
        return RunState.PAUSING
    return recorded
