"""Recognise how a training process failed: CUDA (and Ascend NPU) OOM, NCCL, tracebacks, a launcher's exit, the
host's OOM killer, another signal (SIGABRT, a torchrun agent's death signal)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from lftop.logs.tail import read_tail

OOM = re.compile(
    r"(?:torch\.(?:cuda\.)?OutOfMemoryError: )?(?:CUDA|HIP|NPU) out of memory\.?.*|CUDA error: out of memory.*|"
    r"CUBLAS_STATUS_ALLOC_FAILED.*"
)
OOM_DETAIL = re.compile(r"Tried to allocate ([\d.]+ [KMGT]?i?B)[.\s(]+(GPU|NPU) (\d+)")
NCCL = re.compile(r"(NCCL (?:error|WARN|timeout(?! is set))|ncclInternalError|ncclSystemError|ncclUnhandledCudaError|"
                  r"Watchdog caught collective|Timeout at NCCL work|NCCL communicator was aborted|DistBackendError|"
                  r"setting up NCCL communicator).*",
                  re.I)
KILLED = re.compile(r"exitcode\s*:\s*-9\b|Signal 9 \(SIGKILL\) received|^Killed$|exits with return code = -9\b")
# A rank ended by a signal. SIGTERM (-15) is left out: it is how torchrun stops the other ranks after one failed.
SIGNALLED = re.compile(r"exitcode\s*:\s*-(?!15\b)\d+\b|Signal (?!15\b)\d+ \(SIG\w+\) received|"
                       r"Received \d+ death signal")
PID = re.compile(r"\b(?:pid:?|PID) (\d+)")
LAUNCHER_EXIT = re.compile(r"exits with return code = -?[1-9]\d*")  # DeepSpeed's launcher, after a rank failed
EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)|ChildFailedError)(?::\s?(.*))?$")


def oom_message(text: str) -> str:
    """A short OOM message naming the size it tried to allocate and the GPU, when the text says."""
    detail = OOM_DETAIL.search(text)
    if detail:
        kind = "NPU" if detail.group(2) == "NPU" else "CUDA"
        return f"{kind} out of memory: tried to allocate {detail.group(1)} on {detail.group(2)} {detail.group(3)}"
    return text.strip()[:300]


def classify_exit(rc: int, log: Path, window: int = 65536) -> tuple[str, str]:
    """(kind, message) for a training process that exited with `rc`, from its exit code and log tail."""
    if rc in (-9, 137):
        return "killed", "killed by SIGKILL (the host's OOM killer, or kill -9)"
    tail = (read_tail(log, window) or b"").decode("utf-8", "replace")
    for line in reversed(tail.replace("\r", "\n").splitlines()):
        if OOM.search(line):
            return "oom", oom_message(line)
    if KILLED.search(tail):
        return "killed", "a rank was killed by SIGKILL (the host's OOM killer, or kill -9)"
    for line in reversed(tail.splitlines()):
        if NCCL.search(line):
            return "nccl", line.strip()[:300]
    for line in reversed(tail.splitlines()):
        if EXCEPTION.match(re.sub(r"^\[rank\d+\]:\s?", "", line.strip())):
            return "traceback", line.strip()[:300]
    if rc < 0:
        try:
            return "signal", f"ended by {signal.Signals(-rc).name}"
        except ValueError:  # a number no signal has a name for
            pass
    return "exit", f"exited with code {rc}"
