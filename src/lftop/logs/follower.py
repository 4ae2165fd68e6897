"""Follow a growing file by offset (pread): complete lines only, surviving truncation and replacement.

Partial last lines are held back until their newline arrives; lines longer than `max_line` keep their
last `max_line` bytes (a tqdm line of carriage-return frames is only worth its end). When the file
shrinks (copytruncate) or its inode changes (deleted and recreated), reading starts again at the new
beginning and `resets` counts up, so a consumer can drop what it derived from the old file.
Reading hands out blocks of whole lines as bytes; a block's text is decoded and cleaned when first asked for.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lftop.logs.tail import read_tail
from lftop.logs.text import clean, fastlog, newlines

BLOCK = 4 << 20  # bytes to read at a time through a long log: the allocator reuses blocks this size; caches hold them


@dataclass(frozen=True)
class Block:
    """Whole lines `first` .. `first + count - 1` as read, joined by newlines (no trailing newline)."""

    first: int
    data: bytes | bytearray
    count: int

    @cached_property
    def text(self) -> str:
        return clean(self.data)

    def lines(self) -> list[tuple[int, str]]:
        return list(enumerate(self.text.split("\n"), self.first)) if self.count else []

    def tail(self, count: int) -> list[tuple[int, str]]:
        """The last `count` lines, numbered; only they are decoded."""
        if not self.count:
            return []
        cut = len(self.data)
        for _ in range(count):
            cut = self.data.rfind(b"\n", 0, cut)
            if cut == -1:
                break
        lines = clean(self.data[cut + 1:]).split("\n")
        return list(enumerate(lines, self.first + self.count - len(lines)))


class Follower:
    def __init__(self, path: str | os.PathLike[str], max_line: int = 1 << 20):
        self.path = Path(path)
        self.max_line = max_line
        self.offset = 0
        self.line_no = 0
        self.resets = 0
        self.truncated_lines = 0
        self.behind = False  # the last read stopped at its limit before the end of the file
        self._inode: int | None = None
        self._partial = b""

    def _reset(self) -> None:
        self.offset, self.line_no, self._partial = 0, 0, b""
        self.resets += 1

    def read_block(self, limit: int | None = None) -> Block:
        """The complete lines the file gained; at most `limit` bytes are read in one call."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return Block(self.line_no + 1, b"", 0)
        try:
            st = os.fstat(fd)
            if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
                self._reset()
            self._inode = st.st_ino
            end = st.st_size if limit is None else min(st.st_size, self.offset + limit)
            head = len(self._partial)
            data = bytearray(head + max(0, end - self.offset))  # the held-back line, then what the file gained
            data[:head] = self._partial
            view = memoryview(data)
            filled = head
            while self.offset < end and (got := os.preadv(fd, [view[filled:]], self.offset)):
                self.offset += got
                filled += got
            view.release()
            del data[filled:]
            self.behind = self.offset < st.st_size
        finally:
            os.close(fd)
        cut = data.rfind(b"\n")
        self._partial = bytes(data[cut + 1:][-self.max_line:])
        del data[max(cut, 0):]  # whole lines, in place: a block can be tens of megabytes
        return self._block(data, cut >= 0)

    def _block(self, data: bytearray | bytes, any_line: bool) -> Block:
        first = self.line_no + 1
        if not any_line:
            return Block(first, b"", 0)
        count = newlines(data) + 1
        data, cut = line_ends(data, self.max_line)
        self.truncated_lines += cut
        self.line_no += count
        return Block(first, data, count)

    def read(self, limit: int | None = None) -> list[tuple[int, str]]:
        """New complete lines as (line number, text)."""
        return self.read_block(limit).lines()

    def flush(self) -> Block:
        """The held-back last line, for a file that is complete (a finished run's log)."""
        data, self._partial = self._partial, b""
        return self._block(data, bool(data))


def line_ends(data, max_line: int, find=None) -> tuple:
    """(data, how many lines were cut): each line longer than max_line cut to its last max_line bytes.
    `find` is data's find (or its file's memory map's, for a view of one)."""
    find, half = find or data.find, max(1, max_line // 2)
    if all(find(b"\n", k, k + half) != -1 for k in range(0, len(data) - half + 1, half)):
        return data, 0  # every half-window holds a newline: no line is longer than max_line
    parts = bytes(data).split(b"\n")
    if max(map(len, parts)) <= max_line:
        return data, 0
    return b"\n".join(p[-max_line:] for p in parts), sum(1 for p in parts if len(p) > max_line)


def whole_lines(path: str | os.PathLike[str], max_line: int = 1 << 20, size: int = BLOCK) -> Iterator[bytes | memoryview]:
    """The lines of a file that will not grow (`lftop scan`), in blocks of about `size` bytes of whole lines
    joined by newlines, read through a memory map: no copy of the file is made (copies and fresh buffers
    cost as much as parsing). A block from the map is a view, valid until the next; lines are cut as
    Follower cuts them. A file that cannot be mapped (empty, a pipe), or a parse without the C scanner,
    reads through Follower."""
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if fastlog is not None else None
        except (OSError, ValueError):
            mm = None
    if mm is None:
        follower = Follower(path, max_line)
        while (block := follower.read_block(size)).count or follower.behind:  # behind: in a line longer than size
            if block.count:
                yield block.data
        if (last := follower.flush()).count:
            yield last.data
        return
    with mm, memoryview(mm) as view:
        stop = len(mm) - (mm[-1:] == b"\n")  # a last newline ends the last line
        start = 0
        while start < stop:
            end = mm.rfind(b"\n", start, start + size) if start + size < stop else stop
            if end == -1:  # a line longer than a block
                end = mm.find(b"\n", start + size, stop)
                end = stop if end == -1 else end
            with view[start:end] as chunk:
                yield line_ends(chunk, max_line, lambda sub, a, b, start=start: mm.find(sub, start + a, start + b))[0]
            start = end + 1


def last_lines(path: str | os.PathLike[str], count: int, window: int = 1 << 20) -> list[str]:
    """The last `count` complete lines of a file, from at most its last `window` bytes."""
    data = read_tail(path, window)
    return clean(data.rstrip(b"\n")).split("\n")[-count:] if data else []
