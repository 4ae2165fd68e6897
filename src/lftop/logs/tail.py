"""Read the end of a file: the one tail reader of the logs package (failures, jsonl, follower)."""

from __future__ import annotations

import os


def read_tail(path: str | os.PathLike[str], size: int) -> bytes | None:
    """The last `size` bytes of a file, starting at a line's beginning (a cut first line is dropped);
    None when the file cannot be read."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            start = max(0, end - size)
            f.seek(start)
            data = f.read(end - start)
    except OSError:
        return None
    if start:
        cut = data.find(b"\n")
        data = data[cut + 1:] if cut != -1 else b""
    return data
