from __future__ import annotations

import pytest

from ticketflow.monitoring.windows import TumblingWindows

pytestmark = pytest.mark.unit


def test_closes_on_size() -> None:
    windows: TumblingWindows[int] = TumblingWindows(size=3, seconds=60)
    assert windows.add(1, 0.0) == []
    assert windows.add(2, 1.0) == []
    [closed] = windows.add(3, 2.0)
    assert closed.items == [1, 2, 3] and closed.reason == "size"
    assert (closed.started, closed.closed) == (0.0, 2.0)
    assert len(windows) == 0


def test_closes_on_time_by_tick_and_by_late_item() -> None:
    windows: TumblingWindows[int] = TumblingWindows(size=100, seconds=10)
    assert windows.tick(5.0) is None  # empty: nothing to close
    windows.add(1, 5.0)
    assert windows.tick(14.9) is None
    closed = windows.tick(15.0)
    assert closed is not None and closed.items == [1] and closed.reason == "time"
    windows.add(2, 20.0)
    [late] = windows.add(3, 31.0)  # 2's window expired; 3 opens the next one
    assert late.items == [2]
    assert len(windows) == 1


def test_both_at_once_and_validation() -> None:
    windows: TumblingWindows[int] = TumblingWindows(size=1, seconds=10)
    assert [w.items for w in windows.add(1, 0.0)] == [[1]]
    with pytest.raises(ValueError):
        TumblingWindows(size=0, seconds=1)
