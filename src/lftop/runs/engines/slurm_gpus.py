"""Every node's GPUs while a Slurm run runs: one long-lived stream per job, sampled inside its allocation.

`NodeGpus(job, nodes)` starts `srun --overlap --jobid=JOB` with one task per node, each running lftop's own
headless sampler (`python -m lftop gpus --json --watch`), and keeps each node's latest sample. It is not an agent:
it runs as a step of the user's own job and ends with it (or with `close()`). With LFTOP_SIMULATE set, the
sampler reports simulated GPUs, as it does locally.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

MAX_SAMPLE = 1 << 22  # a sample's JSON is a few kB per GPU: anything longer is not one


class NodeGpus:
    """The latest `lftop gpus --json` sample from every node of a running job, by node name."""

    def __init__(self, job: str, nodes: list[str], interval: float = 2.0, env: dict[str, str] | None = None):
        self.job, self.nodes = job, list(nodes)
        self._latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        # --label prefixes each line with its task id; with one task per node, task i runs on the job's i-th node.
        self._proc = subprocess.Popen(
            ["srun", "--overlap", f"--jobid={job}", f"--nodes={len(self.nodes)}", "--ntasks-per-node=1", "--label",
             sys.executable, "-m", "lftop", "gpus", "--json", "--watch", "--interval", str(interval)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"gpus-{job}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """srun cuts long lines into labelled pieces ("0: {...", "0: ...}"): join each task's pieces again."""
        assert self._proc.stdout is not None
        pending: dict[str, str] = {}
        for line in self._proc.stdout:
            task, _, text = line.partition(": ")
            text = text.rstrip("\n")
            text = text if text.startswith('{"gpus"') else pending.get(task, "") + text
            try:
                sample, node = json.loads(text), self.nodes[int(task)]
            except (ValueError, IndexError):
                pending[task] = text if text.startswith('{"gpus"') and len(text) < MAX_SAMPLE else ""
                continue
            pending[task] = ""
            with self._lock:
                self._latest[node] = sample

    def latest(self) -> dict[str, dict]:
        """{node: {"gpus": ..., "host": ..., "owners": ...}} for the nodes heard from so far."""
        with self._lock:
            return dict(self._latest)

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        """End the stream (srun ends its step on every node)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(5)
