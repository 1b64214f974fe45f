"""The review desk's view of the emerging incidents: the compacted ``ticket-incidents`` topic,
folded into the last event per incident id.

A held ticket's page and ``GET /v1/review`` show its incident (id, size, top terms). The
topic is small (compacted, one record per incident), so a read is a metadata request and a
few records. Started with the app (:meth:`IncidentFeed.start`), a background thread reads it
at start, then again every ``max_age_s`` while the desk is in use (a page asked in the last
``IDLE_AFTER_S``); a request only takes the last book read, and wakes the thread when that
book is older than ``max_age_s`` (the first page after a quiet spell shows the book of before
it). So a broker outage never makes a page wait: the last book is kept, and the read is tried
again at most every ``max_age_s``. Not started (scripts, tests without the app's lifespan),
:meth:`IncidentFeed.book` reads in the caller's thread, at most every ``max_age_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ticketflow.monitoring.incidents_view import IncidentBook, fold

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 30.0
# No page asked for this long: the refresher rests (no consumer every 30 s on a serve that
# answers only /v1/classify) until a page wakes it.
IDLE_AFTER_S = 300.0

Records = Iterable[tuple[bytes | None, bytes | None]]


class IncidentFeed:
    """The incidents as last read; ``read`` yields the topic's (key, value) records from its
    beginning to its end."""

    def __init__(
        self,
        read: Callable[[], Records],
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.max_age_s = max_age_s
        self._clock = clock
        self._book = IncidentBook()
        self._read_at = float("-inf")  # when the last read (or failed read) ended (monotonic)
        self._asked = float("-inf")  # when a page last asked for the book (monotonic)
        self._failing = False
        self._reading = threading.Lock()  # one read at a time
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def book(self) -> IncidentBook:
        """The last book read. Started: never waits for a read (wakes the refresher when the
        book is older than ``max_age_s``). Not started: reads it here when it is that old."""
        self._asked = self._clock()
        if not self._stale():
            return self._book
        if self._thread is not None:
            self._wake.set()
            return self._book
        with self._reading:  # the others wait for this read and share its book
            if self._stale():
                self._refresh_locked()
        return self._book

    def refresh(self) -> None:
        """Read the topic now (blocking); when that fails the last book stays."""
        with self._reading:
            self._refresh_locked()

    def due(self) -> bool:
        """Whether the refresher reads now: the book is ``max_age_s`` old and a page asked for
        it in the last ``IDLE_AFTER_S``."""
        return self._stale() and self._clock() - self._asked < IDLE_AFTER_S

    def start(self) -> None:
        """Read in a background thread: now, then as :meth:`due` says."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="incident-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresher and wait for it (a read under way ends within its timeouts)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join()

    def _stale(self) -> bool:
        return self._clock() - self._read_at >= self.max_age_s

    def _run(self) -> None:
        self.refresh()
        while True:
            self._wake.wait(timeout=self._pause())
            if self._stop.is_set():
                return
            self._wake.clear()
            if self.due():
                self.refresh()

    def _pause(self) -> float | None:
        """Until the book is ``max_age_s`` old while the desk is in use; else until woken."""
        now = self._clock()
        if now - self._asked >= IDLE_AFTER_S:
            return None
        return max(self._read_at + self.max_age_s - now, 0.05)

    def _refresh_locked(self) -> None:
        try:
            book = fold(self._read())
            if self._failing:
                logger.info("incidents: read again")
            self._failing = False
            self._book = book
        except Exception as exc:  # the broker's outage: the desk goes on without news
            if not self._failing:
                logger.warning(
                    "incidents: cannot read the topic (%s: %s); the desk shows the last "
                    "incidents read, retried every %.0f s while it is in use",
                    type(exc).__name__,
                    exc,
                    self.max_age_s,
                )
            self._failing = True
        self._read_at = self._clock()


def topic_reader(
    client_config: dict[str, str], topic: str, *, timeout_s: float = 3.0
) -> Callable[[], Records]:
    """``read`` for :class:`IncidentFeed`: the topic through Kafka; a missing topic (the
    detector was never on) is no incident."""
    from ticketflow.adapters.kafka.dlq import TopicNotFoundError, read_topic

    def read() -> Records:
        try:
            return [
                (r.key, r.value)
                for r in read_topic(
                    client_config, topic, timeout_s=timeout_s, idle_timeout_s=timeout_s
                )
            ]
        except TopicNotFoundError:
            return []

    return read
