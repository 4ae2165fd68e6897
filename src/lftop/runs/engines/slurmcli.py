"""Slurm's clients, read in their machine formats: `sbatch --parsable`, `scontrol show job -d -o`, `sacct -P`.

`scontrol show job -d -o` is one line per job with every field, the exit code as CODE:SIGNAL and each node's GPU
indices; `sacct` answers once the controller has forgotten a job (after MinJobAge), from slurmdbd or, without it,
from jobcomp/filetxt (`sacct -c`). `squeue --json` is not used: in Slurm 22.05 it ignores every filter and lists
the whole cluster's queue, and its exit code is a raw wait status.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from dataclasses import dataclass

from lftop.runs.engines import Node

# Job states after which nothing of the job runs any more (Slurm's "completed" family).
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                   "PREEMPTED", "TIMEOUT", "REVOKED"})
_FIELD = re.compile(r"(?:^|\s)([A-Za-z_/:]+)=(\S*)")
_NODE_GRES = re.compile(r"(?:^|\s)Nodes=(\S+) CPU_IDs=\S* Mem=\S* GRES=(\S*)")
_IDX = re.compile(r"\(IDX:([^)]*)\)")


class SlurmError(Exception):
    """A Slurm client is missing, timed out or refused; the message says which and why."""


def client(*argv: str, env: dict[str, str] | None = None, timeout: float = 30) -> str:
    """Run a Slurm client and return its stdout; SlurmError names the client and its complaint."""
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: run lftop where Slurm's clients are installed (a login node)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {timeout:.0f} s") from None
    if out.returncode != 0:
        raise SlurmError(f"{argv[0]}: {out.stderr.strip() or f'exit status {out.returncode}'}")
    return out.stdout


def expand_hostlist(expr: str) -> list[str]:
    """Slurm's compact host list ("gpu[01-03,07],login1") as names, in order (`scontrol show hostnames`)."""
    names: list[str] = []
    for item in re.findall(r"[^,\[]*(?:\[[^\]]*\][^,\[]*)*", expr):
        if not item:
            continue
        parts = re.split(r"\[([^\]]*)\]", item)  # text, ranges, text, ranges, ..., text
        choices = [[p] if i % 2 == 0 else _ranges(p) for i, p in enumerate(parts)]
        names.extend("".join(c) for c in itertools.product(*choices))
    return names


def _ranges(spec: str) -> list[str]:
    out = []
    for piece in spec.split(","):
        lo, _, hi = piece.partition("-")
        if not hi:
            out.append(lo)
            continue
        width = len(lo) if lo.startswith("0") else 0  # zero padding is kept: node[08-10]
        out.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return out


def _indices(gres: str) -> tuple[int, ...]:
    """GPU indices from a GRES detail such as "gpu:2(IDX:0-1)" or "gpu:a100:2(IDX:0,2),shard:0"."""
    found: list[int] = []
    for spec in _IDX.findall(gres):
        for piece in spec.split(","):
            lo, _, hi = piece.partition("-")
            if lo.isdigit():
                found.extend(range(int(lo), int(hi if hi.isdigit() else lo) + 1))
    return tuple(found)


def _exit(value: str) -> tuple[int | None, int | None]:
    code, _, sig = value.partition(":")
    return (int(code) if code.isdigit() else None), (int(sig) if sig.isdigit() else None)


@dataclass(frozen=True)
class Job:
    id: str
    state: str  # PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str | None = None  # why it is pending ("Resources", "BeginTime", ...)
    exit_code: int | None = None  # the batch script's exit status once it ended
    signal: int | None = None  # the signal that ended it, if one did
    nodes: tuple[Node, ...] = ()
    restarts: int = 0  # times Slurm requeued it itself (preemption, node failure, `scontrol requeue`)

    @property
    def alive(self) -> bool:
        return self.state not in ENDED

    @property
    def detail(self) -> str:
        """The scheduler's word, as lftop shows it: "PENDING (Resources)", "FAILED, exit 1", "CANCELLED"."""
        text = self.state + (f" ({self.reason})" if self.reason and self.state == "PENDING" else "")
        if self.restarts:
            text += f", requeued by Slurm ({self.restarts}x)"
        if not self.alive and self.state != "CANCELLED":
            if self.signal:
                text += f", signal {self.signal}"
            elif self.exit_code:
                text += f", exit {self.exit_code}"
        return text


def parse_scontrol(line: str) -> Job:
    """A Job from one line of `scontrol show job -d -o` (the per-node GRES detail needs -d)."""
    fields = dict(_FIELD.findall(line))
    gpus: dict[str, tuple[int, ...]] = {}
    for hosts, gres in _NODE_GRES.findall(line):
        for name in expand_hostlist(hosts):
            gpus[name] = _indices(gres)
    names = expand_hostlist(fields.get("NodeList", "").replace("(null)", ""))
    code, sig = _exit(fields.get("ExitCode", ""))
    reason = fields.get("Reason")
    return Job(
        id=fields.get("JobId", ""), state=fields.get("JobState", "UNKNOWN"),
        reason=None if reason in (None, "None", "(null)") else reason, exit_code=code, signal=sig,
        nodes=tuple(Node(n, gpus.get(n, ())) for n in names),
        restarts=int(fields["Restarts"]) if fields.get("Restarts", "").isdigit() else 0,
    )


def parse_sacct(line: str) -> Job:
    """A Job from one `sacct -P -o jobid,state,exitcode,nodelist` row ("CANCELLED by 0" is CANCELLED)."""
    job_id, state, exit_code, nodelist = (line.split("|") + ["", "", "", ""])[:4]
    code, sig = _exit(exit_code)
    names = expand_hostlist(nodelist) if nodelist not in ("", "None assigned") else []
    return Job(id=job_id, state=(state.split() or ["UNKNOWN"])[0], exit_code=code, signal=sig,
               nodes=tuple(Node(n) for n in names))


def job(job_id: str, env: dict[str, str] | None = None) -> Job | None:
    """The job as the controller knows it, else as accounting remembers it; None when neither knows it."""
    try:
        line = client("scontrol", "show", "job", "-d", "-o", job_id, env=env).strip()
        if line:
            return parse_scontrol(line)
    except SlurmError as exc:
        if "Invalid job id" not in str(exc):
            raise
    fields = ("-X", "-P", "-n", "-o", "jobid,state,exitcode,nodelist", "-j", job_id)
    try:
        rows = client("sacct", *fields, env=env)
    except SlurmError:  # no slurmdbd: the job completion log (JobCompType=jobcomp/filetxt) has it
        rows = client("sacct", "-c", *fields[1:], env=env)
    found = [parse_sacct(r) for r in rows.splitlines() if r.split("|", 1)[0] == job_id]
    return found[-1] if found else None
