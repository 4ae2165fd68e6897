"""Read a small TOML file that anyone may have written: a regular file, bounded in size, UTF-8, parsed by tomllib.

Each way a file can be unusable is one `Unreadable` (the file itself: missing, a FIFO, too large, ...) or one
`TomlError` (its text: bad bytes, bad syntax, nesting too deep for the parser), with a message a person can act on.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from pathlib import Path

MAX_BYTES = 1 << 20  # profiles and config.toml are a few KiB; anything larger is not one
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_KINDS = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device",
          stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}


class Unreadable(Exception):
    """The file cannot be read as a profile or settings file at all; the message says why."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing  # there is no such file


class TomlError(Exception):
    """The file's text is not usable TOML; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")


def _os_message(exc: OSError) -> str:
    return {
        errno.ENOENT: "no such file",
        errno.ENAMETOOLONG: "file name too long",
        errno.ELOOP: "a symlink loop",
        errno.EACCES: "permission denied",
        errno.ENOTDIR: "a part of the path is not a directory",
    }.get(exc.errno, f"cannot read: {exc.strerror or exc}")


def resolve(path: Path) -> Path:
    """The absolute path with symlinks followed; raises Unreadable for a symlink loop or a NUL in the path."""
    try:
        return path.resolve()
    except RuntimeError:  # Python 3.11-3.12 say "Symlink loop" this way
        raise Unreadable("a symlink loop") from None
    except OSError as exc:
        raise Unreadable(_os_message(exc)) from None
    except ValueError:
        raise Unreadable("the path contains a NUL character") from None


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; never opens a FIFO or device, never blocks."""
    try:
        mode = os.stat(path).st_mode  # the type before opening: opening a FIFO blocks, /dev/zero never ends
        if not stat.S_ISREG(mode):
            raise Unreadable(f"{_kind(mode)}, not a file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Unreadable(_os_message(exc), isinstance(exc, FileNotFoundError)) from None
    except ValueError:  # os.stat's "embedded null byte"
        raise Unreadable("the path contains a NUL character") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the stat and the open
            raise Unreadable("not a regular file")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise Unreadable(_os_message(exc)) from None
    if len(data) > limit:
        raise Unreadable(f"larger than {limit // 1024} KiB: not a TOML settings file")
    return data


def parse(data: bytes) -> tuple[dict, str]:
    """TOML bytes to (tables, text)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TomlError(f"not UTF-8 text: byte {data[exc.start]:#04x}; save the file as UTF-8", line) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        pos = _TOML_POS.search(str(exc))
        line, col = (int(pos.group(1)), int(pos.group(2))) if pos else (None, None)
        message = _TOML_POS.sub("", str(exc)).strip()
        raise TomlError(f"TOML syntax error: {message}" + (f" (column {col})" if col else ""), line) from None
    except RecursionError:
        raise TomlError("arrays or inline tables nested too deeply for the TOML parser", _deep_line(text)) from None


def _deep_line(text: str, depth: int = 100) -> int | None:
    """The line where brackets first open `depth` deep (counted plainly, strings and all): where the parser gave up."""
    level = 0
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            level += (char in "[{") - (char in "]}")
            if level >= depth:
                return number
    return None


def read(path: Path, limit: int = MAX_BYTES) -> tuple[dict, str]:
    """Read and parse; raises Unreadable or TomlError."""
    return parse(read_bytes(path, limit))
