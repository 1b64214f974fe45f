"""Tumbling windows: a window closes after ``size`` items or ``seconds`` since its first item.

Pure: the caller passes the clock (``now``, seconds), so tests need no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Window(Generic[T]):
    items: list[T]
    started: float  # clock of the first item
    closed: float  # clock when it closed
    reason: str  # "size" or "time"


@dataclass
class TumblingWindows(Generic[T]):
    size: int
    seconds: float
    _items: list[T] = field(default_factory=list)
    _started: float | None = None

    def __post_init__(self) -> None:
        if self.size < 1 or self.seconds <= 0:
            raise ValueError(f"size must be >= 1 and seconds > 0, got {self.size}, {self.seconds}")

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T, now: float) -> list[Window[T]]:
        """Add one item; returns the windows this closed (none, one, rarely two).

        A window whose time ran out before this item arrived is closed without it (the item
        opens the next window) — call :meth:`tick` regularly to close idle windows on time.
        """
        closed = [w for w in [self.tick(now)] if w is not None]
        if self._started is None:
            self._started = now
        self._items.append(item)
        if len(self._items) >= self.size:
            closed.append(self._close(now, "size"))
        return closed

    def tick(self, now: float) -> Window[T] | None:
        """Close the open window when its time is up (and it holds anything)."""
        if self._started is not None and now - self._started >= self.seconds:
            return self._close(now, "time")
        return None

    def _close(self, now: float, reason: str) -> Window[T]:
        assert self._started is not None
        window = Window(items=self._items, started=self._started, closed=now, reason=reason)
        self._items = []
        self._started = None
        return window
