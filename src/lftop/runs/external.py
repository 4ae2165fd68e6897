"""Runs lftop did not start: this user's `llamafactory-cli train`, torchrun and `python -m llamafactory...` processes.

A process is a training process by its command line; its config file and `key=value`s (read as LLaMA-Factory reads
them, from the process's working directory) give its output_dir. The processes of one run are the matched process
highest in the tree and everything under it, plus matched processes elsewhere (orphaned ranks, whose torchrun was
killed) with the same working directory and output_dir. Only the caller's own processes are ever looked at.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lftop.logs.jsonl import tail_progress
from lftop.profiles import lfconfig
from lftop.runs.process import ProcessRef

PREFIX = "ext-"
_LAUNCHER = "llamafactory/launcher.py"  # what torchrun starts for each rank
_CLIS = ("llamafactory-cli", "lmf")
_MODULES = ("llamafactory.cli", "llamafactory")  # `python -m llamafactory.cli train ...`
_TORCHRUN = ("torchrun", "torch.distributed.run", "torch.distributed.launch")


@dataclass(frozen=True)
class ExternalRun:
    id: str  # ext-<pid of its first process>
    root: ProcessRef
    members: tuple[ProcessRef, ...]  # its processes as found: a pid is signalled only while it is still that process
    command: list[str]  # the first process's command line
    cwd: str
    config: str | None  # the config file it reads, if any
    args: dict[str, object]
    output_dir: str | None
    python: str | None  # the interpreter it runs under
    nproc: int  # ranks
    cuda_visible_devices: str | None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    gpus: tuple[int, ...] | None = field(default=None)  # GPUs its processes hold (NVML), when known

    def to_dict(self) -> dict:
        """The keys of a run's `ls --json` row (RunStatus.to_dict), and what only an external run has."""
        return {"engine": "external", "owner": getpass.getuser(), "problem": None, "stalled": False,
                "since_last_step": None, "alerts": [], "job": None, "detail": None, "nodes": [], "checkpoints": [],
                "log": None, "created": self.root.create_time, "profile": self.config or "", "failure": None,
                "log_tail": [],
                "run": self.id, "external": True, "state": "running", "alive": True, "pid": self.root.pid,
                "pids": list(self.pids), "command": self.command, "cwd": self.cwd, "config": self.config,
                "output_dir": self.output_dir, "step": self.step, "total_steps": self.total_steps,
                "loss": self.loss, "nproc": self.nproc, "cuda_visible_devices": self.cuda_visible_devices,
                "gpus": list(self.gpus) if self.gpus is not None else None, "python": self.python}

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(ref.pid for ref in self.members)


def training_argv(cmdline: list[str]) -> list[str] | None:
    """LLaMA-Factory's own arguments (config and overrides, or flags) when `cmdline` is a training process."""
    for i, word in enumerate(cmdline):
        name = os.path.basename(word)
        if name in _CLIS and cmdline[i + 1:i + 2] == ["train"]:
            return cmdline[i + 2:]
        module, rest = (cmdline[i + 1], cmdline[i + 2:]) if word == "-m" and i + 1 < len(cmdline) else ("", [])
        if module == "llamafactory.launcher":
            return rest
        if module in _MODULES and rest[:1] == ["train"]:
            return rest[1:]
        if word.endswith(_LAUNCHER):
            return cmdline[i + 1:]
    return None


def _is_torchrun(cmdline: list[str]) -> bool:
    return any(os.path.basename(w) in _TORCHRUN or w in _TORCHRUN for w in cmdline)


def _interpreter(proc: psutil.Process, cmdline: list[str]) -> str | None:
    """The Python it runs under, as started (a venv's bin/python, not the binary it links to)."""
    first = cmdline[0] if cmdline else ""
    if os.path.basename(first).startswith("python"):
        return first
    try:
        return proc.exe() or None
    except psutil.Error:
        return None


@dataclass
class _Found:
    proc: psutil.Process
    cmdline: list[str]
    argv: list[str]
    cwd: str
    created: float


def _mine() -> list[_Found]:
    """This user's training processes, lftop's own runs left out."""
    me, found = os.getuid(), []
    for proc in psutil.process_iter(["uids", "cmdline"]):
        try:
            uids, cmdline = proc.info["uids"], proc.info["cmdline"] or []
            if uids is None or uids.real != me or proc.pid == os.getpid():
                continue
            argv = training_argv(cmdline)
            if argv is None or "LFTOP_RUN_ID" in proc.environ():
                continue
            found.append(_Found(proc, cmdline, argv, proc.cwd(), proc.create_time()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _output_dir(cwd: str, args: dict) -> str | None:
    """The output_dir `args` name, read from `cwd` with symlinks followed (never raising, loops included)."""
    out = args.get("output_dir")
    return os.path.realpath(os.path.join(cwd, os.path.expanduser(str(out)))) if out else None


def _group_key(item: _Found, output_dir: str | None) -> tuple:
    return ("out", output_dir) if output_dir else ("argv", item.cwd, tuple(item.argv))


def find() -> list[ExternalRun]:
    """The caller's training runs that lftop did not start, oldest first."""
    found = _mine()
    by_pid = {f.proc.pid: f for f in found}
    groups: dict[tuple, list[_Found]] = {}
    meta: dict[tuple, tuple[Path | None, dict, str | None]] = {}
    for item in sorted(found, key=lambda f: f.created):
        config, args = lfconfig.command_args(item.argv, Path(item.cwd))
        output_dir = _output_dir(item.cwd, args)
        try:  # a process under another matched one belongs to that one's run
            parent = next((p.pid for p in item.proc.parents() if p.pid in by_pid), None)
        except psutil.Error:
            parent = None
        key = next((k for k, members in groups.items() if any(m.proc.pid == parent for m in members)), None) \
            or _group_key(item, output_dir)
        groups.setdefault(key, []).append(item)
        meta.setdefault(key, (config, args, output_dir))
    runs = []
    for key, members in groups.items():
        first = members[0]
        config, args, output_dir = meta[key]
        ranks = [m for m in members if any(w.endswith(_LAUNCHER) for w in m.cmdline) and not _is_torchrun(m.cmdline)]
        try:
            visible = first.proc.environ().get("CUDA_VISIBLE_DEVICES")
        except psutil.Error:
            visible = None
        progress = tail_progress(Path(output_dir) / "trainer_log.jsonl") if output_dir else None
        runs.append(ExternalRun(
            id=f"{PREFIX}{first.proc.pid}", root=ProcessRef(first.proc.pid, first.created),
            members=tuple(ProcessRef(m.proc.pid, m.created) for m in members), command=first.cmdline, cwd=first.cwd,
            config=str(config) if config else None, args=args, output_dir=output_dir,
            python=_interpreter(first.proc, first.cmdline), nproc=max(1, len(ranks)), cuda_visible_devices=visible,
            step=progress.step if progress else None, total_steps=progress.total if progress else None,
            loss=progress.loss if progress else None,
        ))
    return runs


def processes(run: ExternalRun) -> list[psutil.Process]:
    """Every live process of the run now: its recorded ones that are still the same processes (a pid another
    process has taken since is not), their children, and any of the caller's training processes (orphaned ranks)
    in the same working directory and output_dir."""
    procs: dict[int, psutil.Process] = {}
    for ref in run.members:
        try:
            proc = ref.process()
            if proc is None or proc.uids().real != os.getuid():
                continue
            procs[proc.pid] = proc
            procs.update((c.pid, c) for c in proc.children(recursive=True) if c.uids().real == os.getuid())
        except psutil.Error:
            continue
    for item in _mine():
        resolved = _output_dir(item.cwd, lfconfig.command_args(item.argv, Path(item.cwd))[1])
        if resolved and resolved == run.output_dir and item.cwd == run.cwd:
            procs[item.proc.pid] = item.proc
    return list(procs.values())
