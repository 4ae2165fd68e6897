"""Units and the defaults lftop assumes where a profile is silent."""

from __future__ import annotations

GIB = 1 << 30
MAX_INTERVAL = 3600.0  # the longest refresh interval, in seconds
