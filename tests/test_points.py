"""History.points: the C scanner's columns and the Python parser's objects hold the same points."""

import math
import struct

from lftop.logs import parse
from lftop.logs.history import History
from lftop.logs.parse import LogParser
from lftop.logs.points import Points
from lftop.logs.records import Point, Rows


def _log(steps, total: int, loss_shift: float = 0.0) -> str:
    parts = []
    for step in steps:
        parts.append(f"\r  1%|          | {step}/{total} [00:01<00:09,  2.00it/s]")
        if step % 5 == 0:
            parts.append(f"\r{' ' * 40}\r{{'loss': '{2 + loss_shift - step / 100:.4g}', 'grad_norm': '0.5', "
                         f"'learning_rate': '1e-05', 'epoch': '{step / 100}'}}\n")
            parts.append(f"\r  1%|          | {step}/{total} [00:01<00:09,  2.00it/s]")  # the bar redrawn
    return "".join(parts) + "\n"


def _history(text: str, as_bytes: bool) -> History:
    history, parser = History(), LogParser()
    for block in text.split("\n\n"):  # blocks, as a follower reads them
        history.add_log(parser.feed_block(1, block.encode() if as_bytes else block))
    history.add_log(parser.finish())
    return history


def test_a_resumed_log_gives_the_same_points_from_columns_and_from_objects():
    """Steps 1-60, then a resume from step 20: the later report of each step wins, in step order."""
    text = _log(range(1, 61), 100) + "\n" + _log(range(21, 81), 100, loss_shift=1.0)
    fast, slow = _history(text, as_bytes=True), _history(text, as_bytes=False)
    assert parse.fastlog is not None
    assert list(fast.points) == list(slow.points) == list(range(5, 81, 5))
    assert dict(fast.points.items()) == dict(slow.points.items())
    assert fast.points[25].loss == 2.75 and fast.points[10].loss == 1.9  # resumed: 3 - 0.25; before it: 2 - 0.1
    assert fast.series("loss") == slow.series("loss") == [p.loss for p in slow.points.values()]
    assert fast.last() == slow.last() and fast.last().step == 80
    assert 25 in fast.points and 26 not in fast.points and len(fast.points) == 16


def test_points_hold_what_columns_cannot():
    """A missing value, other metrics, a step past int64: kept as the Point itself, found by step."""
    points = Points()
    huge = 2**70
    made = [Point(3, 1.0, None, None, None, 1), Point(4, 1.0, 0.1, 0.2, 0.3, 2, {"rewards/margins": 0.5}),
            Point(huge, math.nan, 0.1, 0.2, 0.3, 3), Point(5, 0.5, 0.1, 0.2, 0.3, 4)]
    for p in made:
        points.add(p)
    assert list(points) == [3, 4, 5, huge]
    assert points[huge].loss != points[huge].loss and points[4].metrics == {"rewards/margins": 0.5}
    assert points.column("lr") == [0.1, 0.1, 0.1] and points.column("loss")[:3] == [1.0, 1.0, 0.5]
    assert points.last().step == huge


def _rows(steps, lines, loss) -> Rows:
    """Rows as the C scanner packs them (native int64 and float64)."""
    values = b"".join(struct.pack("=4d", v, 0.1, 0.2, 0.3) for v in loss)
    return Rows(struct.pack(f"={len(steps)}q", *steps), struct.pack(f"={len(lines)}q", *lines), values, True, True)


def test_rows_after_objects_keep_step_order_and_the_later_report_wins():
    points = Points()
    points.add(Point(1, 1.0, 0.1, 0.2, 0.3, 1))
    points.add_rows(_rows((2, 3), (2, 3), (0.9, 0.8)))
    assert list(points) == [1, 2, 3] and points[3] == Point(3, 0.8, 0.1, 0.2, 0.3, 3)
    points.add_rows(_rows((2,), (9,), (0.7,)))  # step 2 again (a resume)
    assert list(points) == [1, 2, 3] and len(points) == 3 and points[2] == Point(2, 0.7, 0.1, 0.2, 0.3, 9)
    assert points.column("loss") == [1.0, 0.7, 0.8]


def test_a_key_that_is_no_step_is_not_found():
    points = Points()
    points.add(Point(1, 1.0, 0.1, 0.2, 0.3, 1))
    assert points.get(None) is None and "a" not in points and points.get(1.0) == points[1]
