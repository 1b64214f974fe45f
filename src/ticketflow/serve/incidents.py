"""The review desk's view of the emerging incidents: the compacted ``ticket-incidents`` topic,
read again at most every ``max_age_s``, folded into the last event per incident id.

A held ticket's page and ``GET /v1/review`` show its incident (id, size, top terms). The
topic is small (compacted, one record per incident), so a read is a metadata request and a
few records; it runs in the request's worker thread, and while it fails (broker down) the
last book is kept and the read is not tried again before ``max_age_s``: a broker outage
costs one page at most ``timeout_s`` per ``max_age_s``, never the desk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from ticketflow.monitoring.incidents_view import IncidentBook, fold

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 30.0

Records = Iterable[tuple[bytes | None, bytes | None]]


class IncidentFeed:
    """The incidents as of at most ``max_age_s`` ago; ``read`` yields the topic's (key, value)
    records from its beginning to its end."""

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
        self._read_at = float("-inf")
        self._failing = False
        self._lock = threading.Lock()

    def book(self) -> IncidentBook:
        with self._lock:  # one read at a time; the others wait for it and share its book
            if self._clock() - self._read_at < self.max_age_s:
                return self._book
            try:
                self._book = fold(self._read())
                if self._failing:
                    logger.info("incidents: read again")
                self._failing = False
            except Exception as exc:  # the broker's outage: the desk goes on without news
                if not self._failing:
                    logger.warning(
                        "incidents: cannot read the topic (%s: %s); the desk shows the last "
                        "incidents read, retried every %.0f s",
                        type(exc).__name__,
                        exc,
                        self.max_age_s,
                    )
                self._failing = True
            self._read_at = self._clock()
            return self._book


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
