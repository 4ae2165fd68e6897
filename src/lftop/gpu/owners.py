"""Which run owns each GPU process: walk up the process tree to a run's verified supervisor."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from lftop.runs.process import ProcessRef


@dataclass(frozen=True)
class Owner:
    pid: int
    user: str | None
    command: str
    run: str | None  # run id, when the process belongs to one of lftop's runs
    mine: bool  # this user's: only those can be controlled


def run_roots(runs: list[tuple[str, ProcessRef]]) -> dict[int, str]:
    """{pid: run id} of the runs' supervisors that are still the recorded processes."""
    return {ref.pid: run_id for run_id, ref in runs if ref.alive()}


def owner(pid: int, roots: dict[int, str]) -> Owner:
    me = os.getuid()
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            user = proc.username()
            command = " ".join(proc.cmdline()[:4]) or proc.name()
            mine = proc.uids().real == me
            run = roots.get(pid)
            if run is None:
                run = next((roots[p.pid] for p in proc.parents() if p.pid in roots), None)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return Owner(pid, None, "(exited)", None, False)
    except psutil.AccessDenied:
        return Owner(pid, None, "(another user's process)", None, False)
    return Owner(pid, user, command, run, mine)
