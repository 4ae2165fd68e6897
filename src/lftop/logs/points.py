"""A run's points by step, held as columns of numbers: a long log gives millions of points, and an
object each would cost some 300 bytes and most of the time it takes to read the log."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Mapping

from lftop.logs.records import Point, Rows

FIELDS = ("loss", "lr", "grad_norm", "epoch")  # Point's values, in its order


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
        self._pending: list[Point | Rows] = []  # taken into the columns when next read, in one copy

    def add(self, point: Point) -> None:
        self._pending.append(point)

    def add_rows(self, rows: Rows) -> None:
        self._pending.append(rows)

    def _settle(self) -> None:
        """Take what was added since the last read into the columns: the rows of consecutive Rows in one
        copy a column (growing a column a block at a time would copy it again and again)."""
        pending, self._pending = self._pending, []
        start = 0
        for i, item in enumerate([*pending, None]):
            if type(item) is not Rows:
                if start < i:
                    self._take_rows(pending[start:i])
                if item is not None:
                    self._take(item)
                start = i + 1

    def _take(self, point: Point) -> None:
        row, step = len(self._steps), point.step
        plain = point.metrics is None and all(type(v) is float for v in point[1:5]) and _fits(step) and _fits(point.line)
        if not plain:
            self._objects[row] = point
        stored = step if _fits(step) else 0
        self._place(step, row, stored)
        self._steps.append(stored)
        self._lines.append(point.line if _fits(point.line) else 0)
        self._values.extend(point[1:5] if plain else (0.0, 0.0, 0.0, 0.0))

    def _take_rows(self, batch: list[Rows]) -> None:
        first = len(self._steps)
        last = self._steps[-1] if first else None
        in_order = self._index is None
        for rows in batch:
            low, high = array("q", rows.steps[:8])[0], array("q", rows.steps[-8:])[0]
            in_order = in_order and rows.increasing and (last is None or low > last)
            last = high
        for column, name in ((self._steps, "steps"), (self._lines, "lines"), (self._values, "values")):
            at = len(column) * column.itemsize
            column.frombytes(bytes(sum(len(getattr(rows, name)) for rows in batch)))
            with memoryview(column).cast("B") as view:
                for rows in batch:
                    data = getattr(rows, name)
                    view[at:at + len(data)] = data
                    at += len(data)
        if not in_order:
            if self._index is None:
                self._index = dict(zip(self._steps[:first], range(first), strict=True))
            self._index.update(zip(self._steps[first:], range(first, len(self._steps)), strict=True))

    def _place(self, step: int, row: int, stored: int) -> None:
        if self._index is None and stored == step and (not row or step > self._steps[-1]):
            return  # in step order still
        if self._index is None:
            self._index = dict(zip(self._steps, range(row), strict=True))
        self._index[step] = row

    def _row(self, step: object) -> int | None:
        self._settle()
        if self._index is not None:
            return self._index.get(step)
        try:
            i = bisect_left(self._steps, step)
        except TypeError:  # not a number: no step
            return None
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
        self._settle()
        return iter(sorted(self._index) if self._index is not None else self._steps)

    def __len__(self) -> int:
        self._settle()
        return len(self._index) if self._index is not None else len(self._steps)

    def last(self) -> Point | None:
        self._settle()
        if not self._steps:
            return None
        return self._point(self._index[max(self._index)] if self._index is not None else len(self._steps) - 1)

    def column(self, name: str) -> list[float]:
        """The values of `loss`, `lr`, `grad_norm` or `epoch` in step order, where a point has one."""
        k = FIELDS.index(name)
        self._settle()
        if self._index is None and not self._objects:
            return self._values[k::4].tolist()
        return [v for p in self.values() if (v := p[1 + k]) is not None]
