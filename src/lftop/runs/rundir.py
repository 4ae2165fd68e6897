"""A run's directory: run.json, state, training.log, control, events.jsonl. Its state lives here.

Everything lftop creates here is private to its user (directories 0700, files 0600, whatever the umask):
run.json and the environment may hold tokens. Files are opened without following symlinks.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lftop.runs.process import ProcessRef
from lftop.runs.state import RunState

_META = {"args": (dict,), "env": (dict,), "output_dir": (str,), "cwd": (str,), "nproc": (int,), "engine": (str,),
         "pid": (int,), "create_time": (float, int), "created": (float, int), "gpus": (str, type(None)),
         "job": (str,), "jobs": (list,), "python": (str, type(None))}
_REQUIRED = ("command", "args", "env", "output_dir")
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def open_private(path: Path, flags: int) -> int:
    """A file descriptor for `path`, created 0600 if new; a symlink in its place is refused (ELOOP)."""
    return os.open(path, flags | _NOFOLLOW, 0o600)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) as 0700 whatever the umask."""
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            try:
                parent.mkdir(mode=0o700)
            except FileExistsError:
                pass
            os.chmod(parent, 0o700)


class RunLocked(Exception):
    """Another lftop is acting on this run right now."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def log(self) -> Path:
        return self.path / "training.log"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    def meta(self) -> dict:
        """run.json as a dict; {} when it is missing, unreadable or not a JSON object."""
        try:
            meta = json.loads((self.path / "run.json").read_bytes())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def write_meta(self, meta: dict) -> None:
        write_atomic(self.path / "run.json", json.dumps(meta, indent=1) + "\n")

    def problem(self) -> str | None:
        """What makes this run unsafe to act on, if anything: a damaged run.json, or files another user could
        have written. Such a run is listed with the problem, never resumed, paused or signalled."""
        try:
            st = os.lstat(self.path)
            meta_st = os.lstat(self.path / "run.json")
        except OSError as exc:
            return f"run.json cannot be read: {exc.strerror}"
        if st.st_uid != os.getuid() or meta_st.st_uid != os.getuid():
            return "another user's run: lftop only reads it"
        if (st.st_mode | meta_st.st_mode) & 0o022 or not stat.S_ISREG(meta_st.st_mode):
            return "the run directory or run.json is writable by other users (or not a plain file): not trusted"
        meta = self.meta()
        if not meta:
            return "run.json is damaged (not a JSON object)"
        for key in _REQUIRED:
            if key not in meta:
                return f"run.json is damaged: it has no {key}"
        for key, kinds in _META.items():
            if key in meta and not isinstance(meta[key], kinds):
                return f"run.json is damaged: {key} is {type(meta[key]).__name__}, not {kinds[0].__name__}"
        if not isinstance(meta.get("command"), list) or not all(isinstance(a, str) for a in meta["command"]):
            return "run.json is damaged: command is not a list of strings"
        return None

    def process_ref(self) -> ProcessRef | None:
        """The recorded supervisor (pid and create time), once the run has been started."""
        meta = self.meta()
        pid, created = meta.get("pid"), meta.get("create_time")
        if type(pid) is not int or pid <= 0 or not isinstance(created, (int, float)) or isinstance(created, bool):
            return None
        return ProcessRef(pid, float(created))

    def recorded_state(self) -> RunState | None:
        """The state file's word; None before the first one is written (or when it is not a state)."""
        try:
            word = (self.path / "state").read_bytes().decode("utf-8", "replace").strip()
        except OSError:
            return None
        return RunState.parse(word)

    def set_state(self, state: RunState) -> None:
        write_atomic(self.path / "state", f"{state}\n")

    def control(self) -> str:
        try:
            return (self.path / "control").read_bytes().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def request(self, word: str) -> None:
        write_atomic(self.path / "control", word + "\n")

    def clear_control(self) -> None:
        (self.path / "control").unlink(missing_ok=True)

    def event(self, name: str, **fields) -> None:
        line = json.dumps({"time": time.time(), "event": name, "by": "lftop", "pid": os.getpid(), **fields})
        fd = open_private(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict]:
        """The events that are JSON objects; other lines (damaged, truncated) are skipped."""
        found = []
        try:
            lines = self.events_file.read_bytes().decode("utf-8", "replace").splitlines()
        except OSError:
            return found
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def nvml_peaks(self) -> dict[str, int]:
        """The most GPU memory NVML has shown the run's processes holding, by GPU index (bytes)."""
        try:
            data = json.loads((self.path / "nvml_peak.json").read_bytes())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if type(v) is int} if isinstance(data, dict) else {}

    def record_nvml_peaks(self, used: dict[str, int]) -> None:
        """Keep the larger of the recorded and the `used` bytes of each GPU (the GPU sampler's reading)."""
        peaks = self.nvml_peaks()
        if all(peaks.get(gpu, 0) >= value for gpu, value in used.items()):
            return
        write_atomic(self.path / "nvml_peak.json",
                     json.dumps({gpu: max(value, peaks.get(gpu, 0)) for gpu, value in {**peaks, **used}.items()}))

    def open_log(self) -> IO[bytes]:
        """training.log for appending (a child's stdout and stderr)."""
        return os.fdopen(open_private(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive, non-blocking: two lftops cannot launch, resume or stop the same run at once."""
        fd = open_private(self.path / ".lock", os.O_RDWR | os.O_CREAT)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"{self.id}: another lftop is acting on this run") from None
            yield
        finally:
            os.close(fd)


def runs_root(home: Path) -> Path:
    return home / "runs"


class UnsafeHome(Exception):
    """The runs folder could be changed under this user by another one."""


def make_runs_root(home: Path) -> Path:
    """runs/ in `home`: private (0700), or in a shared home (a sticky, world-writable folder such as a team's
    /shared/lftop made with `mkdir -m 1777`) sticky and world-writable like /tmp, each user's runs private.
    An existing runs/ that another user owns and could rearrange (not sticky) is refused."""
    root = runs_root(home)
    if root.is_dir():
        st = root.lstat()
        if st.st_uid not in (os.getuid(), 0) and not st.st_mode & stat.S_ISVTX:
            raise UnsafeHome(f"{root} belongs to another user and is not sticky (mode 1777): they could move "
                             "your runs; use a home of your own (--home) or ask them to `chmod 1777` it")
        return root
    make_private_dir(home)
    shared = home.stat().st_mode & (stat.S_ISVTX | 0o002) == (stat.S_ISVTX | 0o002)
    try:
        root.mkdir(mode=0o700)
        os.chmod(root, 0o1777 if shared else 0o700)
    except FileExistsError:
        pass
    return root


@contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """Held while a run is created or restarted, so two of this user's lftops never start two runs into one
    output_dir. One lock file per user: in a shared home nobody else's lock is ever opened."""
    fd = open_private(make_runs_root(home) / f".launch-{os.getuid()}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create(home: Path, name: str) -> RunDir:
    """A new, empty, private run directory named `name-<time>-<4 hex>` (a counter is added if that exists).

    The random part keeps ids unique across homes too: a run's processes are found by the id in their
    environment, and two homes launching one profile in the same second must not share it."""
    make_runs_root(home)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run_id, n = f"{name}-{stamp}", 1
    while True:
        try:
            (runs_root(home) / run_id).mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
            run_id = f"{name}-{stamp}-{n}"
    path = runs_root(home) / run_id
    os.chmod(path, 0o700)
    return RunDir(path)


def all_runs(home: Path) -> list[RunDir]:
    """Every run directory: those with a run.json, and other users' that cannot be looked into."""
    root = runs_root(home)
    if not root.is_dir():
        return []
    found = [RunDir(p) for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()
             and ((p / "run.json").exists() or not os.access(p, os.R_OK | os.X_OK))]
    return sorted(found, key=lambda r: r.id)


class RunNotFound(Exception):
    pass


def find(home: Path, ref: str) -> RunDir:
    """A run by its id or an unambiguous prefix of it."""
    if not ref:
        raise RunNotFound("no run named: give a run id (lftop ls lists them)")
    runs = all_runs(home)
    exact = [r for r in runs if r.id == ref]
    if exact:
        return exact[0]
    matches = [r for r in runs if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run matches {ref!r} in {runs_root(home)} (lftop ls lists them)")
    raise RunNotFound(f"{ref!r} is ambiguous: " + ", ".join(r.id for r in matches))
