"""Progress of long loops: a bar on a terminal, a log line every tenth elsewhere.

tqdm redraws its bar with carriage returns; written to a log file or a container's log stream
that is hundreds of partial lines. When stderr is not a terminal, :func:`progress` returns a
:class:`LogProgress` instead, which logs ``desc: 40% (400/1000)`` as each tenth is passed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Sized
from types import TracebackType
from typing import Any, Generic, Protocol, TextIO, TypeVar, overload

logger = logging.getLogger(__name__)

__all__ = ["LogProgress", "ProgressBar", "on_terminal", "progress"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_STEPS = 10  # a log line per tenth of the total


class ProgressBar(Protocol[T_co]):
    """What callers use of a bar; tqdm's bars and :class:`LogProgress` both have it."""

    def __iter__(self) -> Iterator[T_co]: ...

    def update(self, n: int = 1) -> object: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> object: ...

    def close(self) -> object: ...


class LogProgress(Generic[T]):
    """A progress "bar" that logs ``desc: 40% (400/1000)`` at each tenth of ``total``.

    Without a total (an iterator of unknown length) it logs the count once, when closed or
    exhausted. Iterating it counts one per item, as tqdm does; ``update`` counts by hand.
    """

    def __init__(
        self,
        iterable: Iterable[T] | None,
        *,
        desc: str,
        total: int | None,
        log: logging.Logger = logger,
        disable: bool = False,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total
        self.n = 0
        self.disable = disable
        self._log = log
        self._step = 0
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError(f"{self.desc}: nothing to iterate; use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable or not self.total or self.total <= 0:
            return
        step = min(_STEPS, self.n * _STEPS // self.total)
        if step > self._step:
            self._step = step
            percent = 100 * self.n // self.total
            self._log.info("%s: %d%% (%d/%d)", self.desc, percent, self.n, self.total)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """tqdm shows it next to the bar; a log line per tenth has no room for it."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and not self.total and self.n:
            self._log.info("%s: %d done", self.desc, self.n)


@overload
def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = ...,
    unit: str = ...,
    disable: bool = ...,
    stream: TextIO | None = ...,
) -> ProgressBar[T]: ...


@overload
def progress(
    iterable: int,
    *,
    desc: str,
    total: int | None = ...,
    unit: str = ...,
    disable: bool = ...,
    stream: TextIO | None = ...,
) -> ProgressBar[Any]: ...


def progress(
    iterable: Iterable[T] | int,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    disable: bool = False,
    stream: TextIO | None = None,
) -> ProgressBar[Any]:
    """A tqdm bar over ``iterable`` when ``stream`` (default: stderr) is a terminal, else a
    :class:`LogProgress`. Pass an int instead of an iterable for a bar moved by ``update``.

    ``total`` defaults to ``len(iterable)`` when it has one. ``disable`` silences both.
    """
    items: Iterable[T] | None
    if isinstance(iterable, int):
        items, total = None, iterable if total is None else total
    else:
        items = iterable
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
    out = sys.stderr if stream is None else stream
    if _is_terminal(out):
        from tqdm import tqdm

        bar: ProgressBar[Any] = tqdm(
            items, desc=desc, total=total, unit=unit, disable=disable, file=out
        )
        return bar
    return LogProgress(items, desc=desc, total=total, disable=disable)


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is a terminal: libraries' own tqdm bars
    (model2vec, sentence-transformers) are asked for only then, never into log files."""
    return _is_terminal(sys.stderr if stream is None else stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
