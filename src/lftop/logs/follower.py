"""Follow a growing file by offset (pread): complete lines only, surviving truncation and replacement.

Partial last lines are held back until their newline arrives; lines longer than `max_line` keep their
last `max_line` bytes (a tqdm line of carriage-return frames is only worth its end). When the file
shrinks (copytruncate) or its inode changes (deleted and recreated), reading starts again at the new
beginning and `resets` counts up, so a consumer can drop what it derived from the old file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CHUNK = 1 << 20
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x00")


def clean(raw: bytes) -> str:
    """Text of a raw line: invalid UTF-8 replaced, ANSI escapes and NUL bytes removed."""
    text = raw.decode("utf-8", "replace")
    return _CONTROL.sub("", text) if ("\x1b" in text or "\x00" in text) else text


class Follower:
    def __init__(self, path: str | os.PathLike[str], max_line: int = 1 << 20, start: int = 0):
        self.path = Path(path)
        self.max_line = max_line
        self.offset = start
        self.line_no = 0
        self.resets = 0
        self.truncated_lines = 0
        self._inode: int | None = None
        self._partial = b""

    def _reset(self) -> None:
        self.offset, self.line_no, self._partial = 0, 0, b""
        self.resets += 1

    def read(self, limit: int | None = None) -> list[tuple[int, str]]:
        """New complete lines as (line number, text); at most `limit` bytes are read in one call."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return []
        try:
            st = os.fstat(fd)
            if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
                self._reset()
            self._inode = st.st_ino
            end = st.st_size if limit is None else min(st.st_size, self.offset + limit)
            lines: list[tuple[int, str]] = []
            while self.offset < end:
                data = os.pread(fd, min(CHUNK, end - self.offset), self.offset)
                if not data:
                    break
                self.offset += len(data)
                self._split(self._partial + data, lines)
            return lines
        finally:
            os.close(fd)

    def _split(self, data: bytes, out: list[tuple[int, str]]) -> None:
        parts = data.split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > self.max_line:
            self._partial = self._partial[-self.max_line :]
        number = self.line_no
        for raw in parts:
            number += 1
            if len(raw) > self.max_line:
                raw = raw[-self.max_line :]
                self.truncated_lines += 1
            out.append((number, clean(raw)))
        self.line_no = number

    def flush(self) -> list[tuple[int, str]]:
        """The held-back last line, for a file that is complete (a finished run's log)."""
        if not self._partial:
            return []
        self.line_no += 1
        line, self._partial = (self.line_no, clean(self._partial)), b""
        return [line]


def read_lines(path: str | os.PathLike[str], max_line: int = 1 << 20) -> list[tuple[int, str]]:
    """Every line of a file that is not growing, the last one included."""
    follower = Follower(path, max_line)
    return follower.read() + follower.flush()
