"""A run's points by step, held as columns of numbers: a long log gives millions of points, and an
object each would cost some 300 bytes and most of the time it takes to read the log."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping

from lftop.logs.records import Point, Rows

_FIELDS = ("loss", "lr", "grad_norm", "epoch")


def _fits(n: object) -> bool:
    """An int an int64 column holds."""
    return type(n) is int and -(1 << 63) <= n < 1 << 63


class Points(Mapping[int, Point]):
    """Each step's latest report (a resumed run logs steps again), in step order.

    The C scanner's Rows are kept as numbers and made Points when read; a Point made by the Python
    parser or the JSONL reader that has a missing value or other metrics is kept as it is. While every
    step arrives above those before it (nearly always), rows are in step order and a step is found by
    bisection; after the first that does not, a step -> row index holds the latest row of each step.
    """

    def __init__(self) -> None:
        self._steps = array("q")
        self._lines = array("q")
        self._values = array("d")  # loss, lr, grad_norm, epoch: four a row
        self._objects: dict[int, Point] = {}  # row -> its Point, where numbers alone cannot hold it
        self._index: dict[int, int] | None = None

    def add(self, point: Point) -> None:
        row, step = len(self._steps), point.step
        plain = point.metrics is None and all(type(v) is float for v in point[1:5]) and _fits(step) and _fits(point.line)
        if not plain:
            self._objects[row] = point
        stored = step if _fits(step) else 0
        self._place(step, row, stored)
        self._steps.append(stored)
        self._lines.append(point.line if _fits(point.line) else 0)
        self._values.extend(point[1:5] if plain else (0.0, 0.0, 0.0, 0.0))

    def add_rows(self, rows: Rows) -> None:
        first, count = len(self._steps), len(rows.steps) // 8
        steps = array("q", rows.steps)
        if self._index is None and not (rows.increasing and (not first or steps[0] > self._steps[-1])):
            self._index = dict(zip(self._steps, range(first), strict=True))
        if self._index is not None:
            self._index.update(zip(steps, range(first, first + count), strict=True))
        self._steps.extend(steps)
        self._lines.frombytes(rows.lines)
        self._values.frombytes(rows.values)

    def _place(self, step: int, row: int, stored: int) -> None:
        if self._index is None and stored == step and (not row or step > self._steps[-1]):
            return  # in step order still
        if self._index is None:
            self._index = dict(zip(self._steps, range(row), strict=True))
        self._index[step] = row

    def _row(self, step: object) -> int | None:
        if self._index is not None:
            return self._index.get(step)
        i = bisect_left(self._steps, step)
        return i if i < len(self._steps) and self._steps[i] == step else None

    def _point(self, row: int) -> Point:
        if (held := self._objects.get(row)) is not None:
            return held
        loss, lr, grad_norm, epoch = self._values[4 * row:4 * row + 4]
        return Point(self._steps[row], loss, lr, grad_norm, epoch, self._lines[row])

    def __getitem__(self, step: int) -> Point:
        if (row := self._row(step)) is None:
            raise KeyError(step)
        return self._point(row)

    def __contains__(self, step: object) -> bool:
        return self._row(step) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._index) if self._index is not None else self._steps)

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else len(self._steps)

    def last(self) -> Point | None:
        if not self._steps:
            return None
        return self._point(self._index[max(self._index)] if self._index is not None else len(self._steps) - 1)

    def column(self, name: str) -> list[float]:
        """The values of `loss`, `lr`, `grad_norm` or `epoch` in step order, where a point has one."""
        k = _FIELDS.index(name)
        if self._index is None and not self._objects:
            return self._values[k::4].tolist()
        return [v for p in self.values() if (v := p[1 + k]) is not None]
