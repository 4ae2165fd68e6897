"""A real two-node Slurm cluster on this host for the tests: munged, slurmctld and two slurmd from a temp dir.

Debian's slurmctld, slurmd, slurm-client and munge (Slurm 22.05) are enough; nothing is written outside the
directory and no system service is started. Each node has CPUS cores and GPUS fake GPUs (gres files are symlinks
to /dev/null), so jobs get CUDA_VISIBLE_DEVICES and `scontrol show job -d` shows GPU indices. `running(DIR)`
yields the environment (SLURM_CONF) that Slurm's clients need to reach it, and takes it all down at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NODES = ("nodeA", "nodeB")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel", "sacct", "sinfo")
MARK = "LFTOP_TEST_SLURM_DIR"  # in the daemons' environment (and so their slurmstepds'), never in a job's

CONF = """\
ClusterName=lftoptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.sock
StateSaveLocation={d}/ctld
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
PlugStackConfig={d}/plugstack.conf
JobCompType=jobcomp/filetxt
JobCompLoc={d}/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
MailProg=/bin/true
GresTypes=gpu
{nodes}
PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""


class ClusterUnavailable(Exception):
    """The Slurm or munge binaries are missing, or the daemons would not come up."""


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _write_conf(d: Path, ports: list[int], user: str, cpus: int, gpus: int) -> None:
    host = socket.gethostname().split(".")[0]
    nodes, gres = [], []
    for i, (name, port) in enumerate(zip(NODES, ports[1:], strict=True)):
        nodes.append(f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} "
                     f"RealMemory=2000 Gres=gpu:{gpus}")
        first = i * gpus
        for g in range(first, first + gpus):  # gres File= must be a character device: a link to /dev/null is
            link = d / f"nvidia{g}"
            if not link.is_symlink():
                link.symlink_to("/dev/null")
        gres.append(f"NodeName={name} Name=gpu File={d}/nvidia[{first}-{first + gpus - 1}]")
    (d / "gres.conf").write_text("\n".join(gres) + "\n")
    (d / "slurm.conf").write_text(CONF.format(host=host, ctld_port=ports[0], user=user, d=d,
                                              nodes="\n".join(nodes), names=",".join(NODES)))


def _spawn(d: Path, name: str, argv: list[str]) -> subprocess.Popen:
    with open(d / f"{name}.out", "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d,
                                start_new_session=True, env={**os.environ, "SLURM_CONF": str(d / "slurm.conf"), MARK: str(d)})


def _until(predicate, timeout: float, what: str, procs: list[subprocess.Popen] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if any(p.poll() is not None for p in procs):
            raise _Died(what)
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


class _Died(Exception):
    pass


def _marked(d: Path) -> list[int]:
    """Processes with our mark in their environment: the daemons and every slurmstepd they started."""
    mark, found = f"{MARK}={d}".encode(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if mark in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _kill_all(d: Path, daemons: list[subprocess.Popen]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _marked(d):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for p in daemons:
                p.poll()  # reap our own children so they stop counting
            if not _marked(d):
                return
            time.sleep(0.1)


@contextmanager
def running(d: Path, cpus: int = 2, gpus: int = 2) -> Iterator[dict[str, str]]:
    """Bring the cluster up in `d` (about half a second), yield {"SLURM_CONF": ...}; take it down afterwards."""
    if missing := missing_binaries():
        raise ClusterUnavailable("missing " + ", ".join(missing) + " (apt-get install slurmctld slurmd slurm-client munge)")
    d = Path(d).resolve()
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)  # munged refuses a group- or other-writable directory
    env = {"SLURM_CONF": str(d / "slurm.conf")}
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (d / "plugstack.conf").write_text("")
    daemons = [_spawn(d, "munged", [_which("munged"), "-F", "--force", f"--socket={d}/munge.sock", f"--key-file={key}",
                                    f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"])]
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()

    def query(*argv: str) -> str:
        return subprocess.run(argv, check=False, env={**os.environ, **env}, capture_output=True, text=True, timeout=20).stdout

    try:
        _until(lambda: (d / "munge.sock").exists(), 10, "munged's socket", daemons)
        for _attempt in range(5):  # a port taken between pick and bind makes a daemon exit: new ports, again
            _write_conf(d, _free_ports(1 + len(NODES)), user, cpus, gpus)
            ours = [_spawn(d, "slurmctld", [_which("slurmctld"), "-D", "-i"])]
            try:
                _until(lambda: "UP" in query("scontrol", "ping"), 30, "slurmctld", ours)
                ours += [_spawn(d, f"slurmd-{n}", [_which("slurmd"), "-D", "-N", n]) for n in NODES]
                _until(lambda: query("sinfo", "-h", "-N", "-o", "%t").split() == ["idle"] * len(NODES), 60,
                       "both nodes idle", ours)
                daemons += ours
                break
            except _Died:
                for p in ours:
                    p.kill()
                    p.wait()
        else:
            raise ClusterUnavailable(f"the Slurm daemons keep dying: see {d}/*.log")
        yield env
    finally:
        try:  # Slurm ends its own jobs first: SIGTERM, SIGKILL after KillWait
            subprocess.run(["scancel", f"--user={os.getuid()}"], check=False, env={**os.environ, **env}, capture_output=True, timeout=10)
            _until(lambda: not query("squeue", "-h", "-t", "R,CG,CF,S,PD").strip(), 15, "the queue to empty")
        except (ClusterUnavailable, subprocess.TimeoutExpired, OSError):
            pass
        _kill_all(d, daemons)
