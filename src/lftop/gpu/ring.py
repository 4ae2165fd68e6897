"""Fixed-size rings of samples, one per metric, for sparklines: memory stays bounded forever."""

from __future__ import annotations

from collections import deque


class Ring:
    """The last `size` values of one metric (None for N/A is skipped)."""

    __slots__ = ("_values",)

    def __init__(self, size: int = 3600):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float | None) -> None:
        if value is not None:
            self._values.append(float(value))

    def values(self) -> list[float]:
        return list(self._values)

    def __len__(self) -> int:
        return len(self._values)


class Rings:
    """Rings keyed by name (e.g. "gpu0.util"), created on first use, all of one size."""

    def __init__(self, size: int = 3600):
        self.size = size
        self._rings: dict[str, Ring] = {}

    def add(self, name: str, value: float | None) -> None:
        ring = self._rings.get(name)
        if ring is None:
            ring = self._rings[name] = Ring(self.size)
        ring.add(value)

    def get(self, name: str) -> Ring:
        return self._rings.get(name) or Ring(self.size)
