"""Queue until it fits: a queued run waits in a detached process of its own (no daemon of lftop's), started
like a supervisor, and starts itself when its GPUs have room, in the order runs were queued; then that same
process becomes the run's supervisor. `lftop stop` cancels a queued run like any other.

A queued run waits while it is predicted not to fit the free memory of the GPUs it would get, while one of
those GPUs is held by another live run (`[launch] gpus` named by index), while a run on them is still starting
(its memory is not in use yet), and while a run queued before it is still waiting.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lftop.ops.plan import Plan, place_run, plan
from lftop.profiles import Profile
from lftop.profiles.launch import Launch
from lftop.runs import notify, rundir, supervisor
from lftop.runs.engines.local import spawn
from lftop.runs.rundir import RunDir, home_lock
from lftop.runs.state import RunState
from lftop.runs.status import status

POLL = 1.0  # seconds between looks at the GPUs


def _gpus(value: object) -> set[str]:
    return {t.strip() for t in value.split(",") if t.strip()} if isinstance(value, str) else set()


def _queued_before(home: Path, run: RunDir) -> list[RunDir]:
    created = run.meta().get("created") or 0
    ahead = []
    for other in rundir.all_runs(home):
        meta = other.meta()
        if other.id != run.id and other.problem() is None and (meta.get("created") or 0, other.id) < (created, run.id):
            if status(other).state == RunState.QUEUED:
                ahead.append(other)
    return ahead


def blocking(p: Plan, home: Path, run: RunDir) -> str | None:
    """Why `run` cannot start now on the plan's GPUs; None when it can."""
    if ahead := _queued_before(home, run):
        return f"behind {len(ahead)} queued run(s): {', '.join(r.id for r in ahead)}"
    if p.verdict == "oom":
        return f"needs {p.report.per_gpu_gib:.1f} GiB per GPU; {p.note}"
    wanted = _gpus(p.placement.cuda_visible_devices) if p.placement else set()
    for other in rundir.all_runs(home):
        if other.id == run.id or other.problem() is not None:
            continue
        current = status(other)
        if not current.alive or current.state == RunState.QUEUED:
            continue
        shared = wanted & _gpus(other.meta().get("gpus"))
        if shared and current.state == RunState.STARTING:
            return f"{other.id} is still starting on GPU(s) {','.join(sorted(shared))}"
        if shared and isinstance(p.profile.launch.gpus, str):
            return f"GPU(s) {','.join(sorted(shared))} held by {other.id}"
    return None


def spawn_waiter(run: RunDir) -> None:
    spawn(run, "lftop.ops.queue")


def _profile(meta: dict) -> Profile:
    """The profile as it was queued (run.json keeps its [launch] and [train])."""
    launch = dict(meta["launch"])
    launch["sbatch"] = tuple(launch.get("sbatch") or ())
    return Profile(path=Path(meta["profile"]), description=str(meta.get("description") or ""),
                   launch=Launch(**launch), train=meta["profile_train"])


def main(run_dir: str) -> int:
    run = RunDir(Path(run_dir))
    home = run.path.parent.parent
    meta = run.meta()
    profile = _profile(meta)
    queued_at = time.time()
    while True:
        with home_lock(home):
            p = plan(profile, home=home)
            reason = blocking(p, home, run) if p.placement is not None else (p.problem or "no GPUs can be chosen")
            if reason is None:
                place_run(run, p)
                waited = round(time.time() - queued_at, 1)
                run.event("started", gpus=p.placement.cuda_visible_devices, waited=waited)
                run.set_state(RunState.STARTING)
                break
            ahead = len(_queued_before(home, run))
            rundir.write_atomic(run.path / "queue", json.dumps({"position": ahead + 1, "waiting_for": reason}))
        time.sleep(POLL)
    notify.send(run, "started", state=str(RunState.STARTING), reason=f"waited {waited} s in the queue")
    return supervisor.main(run_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
