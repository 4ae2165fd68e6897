"""Bytes of a log as text, and the optional C scanner (lftop.logs._fastlog) that reads them.

`fastlog` is the compiled module, or None where lftop was installed without a C compiler; every
caller then takes the pure-Python path, which gives the same records.
"""

from __future__ import annotations

import re

try:
    from lftop.logs import _fastlog as fastlog
except ImportError:  # built without a compiler
    fastlog = None

_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\n]*\x07|\x00")


def clean(raw: bytes | bytearray | memoryview) -> str:
    """Text of raw lines: invalid UTF-8 replaced, ANSI escapes and NUL bytes removed."""
    text = str(raw, "utf-8", "replace")
    return _CONTROL.sub("", text) if ("\x1b" in text or "\x00" in text) else text


def newlines(data: bytes | bytearray) -> int:
    """The number of newline bytes in `data` (memchr in C when built)."""
    return data.count(b"\n") if fastlog is None else fastlog.newlines(data)
