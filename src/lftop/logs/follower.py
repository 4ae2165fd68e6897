"""Follow a growing file by offset (pread): complete lines only, surviving truncation and replacement.

Partial last lines are held back until their newline arrives; lines longer than `max_line` keep their
last `max_line` bytes (a tqdm line of carriage-return frames is only worth its end). When the file
shrinks (copytruncate) or its inode changes (deleted and recreated), reading starts again at the new
beginning and `resets` counts up, so a consumer can drop what it derived from the old file.
Reading hands out blocks of whole lines as bytes; a block's text is decoded and cleaned when first asked for.
"""

from __future__ import annotations

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


def line_ends(data: bytes | bytearray | memoryview, max_line: int) -> tuple:
    """(data, how many lines were cut): each line longer than max_line cut to its last max_line bytes."""
    half = max(1, max_line // 2)
    if all(fastlog.line_end(data, k) < k + half if fastlog else data.find(b"\n", k, k + half) != -1
           for k in range(0, len(data) - half + 1, half)):
        return data, 0  # every half-window holds a newline: no line is longer than max_line
    parts = bytes(data).split(b"\n")
    if max(map(len, parts)) <= max_line:
        return data, 0
    return b"\n".join(p[-max_line:] for p in parts), sum(1 for p in parts if len(p) > max_line)


def whole_lines(path: str | os.PathLike[str], max_line: int = 1 << 20, size: int = BLOCK) -> Iterator[bytes | memoryview]:
    """The lines of a file that will not grow (`lftop scan`), in blocks of whole lines joined by newlines,
    read into one buffer used again for each block (fresh buffers and their pages cost as much as parsing):
    a block is a view of it, valid until the next. Lines are cut as Follower cuts them. A file that shrinks
    meanwhile ends where it ends. Without the C scanner the blocks come from a Follower.
    """
    if fastlog is None:
        follower = Follower(path, max_line)
        while (block := follower.read_block(size)).count or follower.behind:  # behind: in a line longer than size
            if block.count:
                yield block.data
        if (last := follower.flush()).count:
            yield last.data
        return
    buf, head, offset = bytearray(max(size, 2 * max_line)), 0, 0  # head: a line's start, carried to the front
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            with memoryview(buf) as view:
                got = os.preadv(fd, [view[head:]], offset)
            offset, filled = offset + got, head + got
            cut = buf.rfind(b"\n", 0, filled) if got else filled
            if cut == -1:  # no line ends yet: read on, keeping a line that fills the buffer to its end
                if filled == len(buf):
                    buf[:max_line] = buf[filled - max_line:filled]
                head = max_line if filled == len(buf) else filled
                continue
            if got or head:  # lines up to the last newline; at the end, a last line without one
                with memoryview(buf)[:cut] as chunk:
                    yield line_ends(chunk, max_line)[0]
            if not got:
                return
            head = filled - cut - 1
            buf[:head] = buf[cut + 1:filled]
    finally:
        os.close(fd)


def last_lines(path: str | os.PathLike[str], count: int, window: int = 1 << 20) -> list[str]:
    """The last `count` complete lines of a file, from at most its last `window` bytes."""
    data = read_tail(path, window)
    return clean(data.rstrip(b"\n")).split("\n")[-count:] if data else []
