"""Units and the defaults lftop assumes where a profile is silent."""

from __future__ import annotations

GIB = 1 << 30
