"""A run's processes, verified by pid plus create time and by the LFTOP_RUN_ID in their environment."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """The live process, only if it is still the one recorded (a recycled pid is not)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        return self.process() is not None


def tagged(run_id: str) -> list[psutil.Process]:
    """This user's processes whose environment says LFTOP_RUN_ID=run_id (orphaned torchrun workers too)."""
    found = []
    me = os.getuid()
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != me or proc.pid == os.getpid():
                continue
            if proc.environ().get("LFTOP_RUN_ID") == run_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def tree(root: ProcessRef | None, run_id: str) -> list[psutil.Process]:
    """Every live process of a run: the verified root, its descendants and all tagged processes."""
    procs: dict[int, psutil.Process] = {}
    proc = root.process() if root else None
    if proc is not None:
        procs[proc.pid] = proc
        try:
            procs.update((c.pid, c) for c in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    procs.update((p.pid, p) for p in tagged(run_id))
    return list(procs.values())


def terminate(procs: list[psutil.Process], grace: float) -> list[psutil.Process]:
    """SIGTERM all, SIGKILL what is left after `grace` seconds; returns survivors (normally none)."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    return alive


def wait_gone(ref: ProcessRef, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while ref.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
