"""Consumer-group lag as the broker sees it, watched: the drift monitor reads it every
interval (:class:`~ticketflow.adapters.kafka.lag.GroupLagReader`) and publishes it.

The workers' own ``ticketflow_consumer_lag`` covers only the partitions each one holds and
vanishes with them: when every worker is dead, the backlog is invisible exactly when it
grows. The drift monitor (a separate process) reads this figure from the broker instead, for
the alerts and dashboards; it needs no member of the group to be alive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from ticketflow.adapters.kafka.lag import GroupLagReader, PartitionLag

logger = logging.getLogger(__name__)


def watch_group_lag(
    read: Callable[[], Sequence[PartitionLag]],
    publish: Callable[[Sequence[PartitionLag]], None],
    *,
    interval_s: float,
    stop: threading.Event,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Every ``interval_s`` until ``stop``: ``publish(read())``. A failed read (broker away)
    is reported and retried at the next interval; the last published figures stay."""
    failing = False
    while not stop.is_set():
        try:
            lags = read()
        except Exception as exc:  # the loop outlives a broker outage
            if on_error is not None:
                on_error(exc)
            if not failing:  # once per outage, not every interval
                logger.warning("consumer-group lag: read failed: %r", exc)
            failing = True
        else:
            if failing:
                logger.info("consumer-group lag: reading again")
            failing = False
            publish(lags)
        stop.wait(interval_s)


def start_lag_watch(
    reader: GroupLagReader,
    publish: Callable[[Sequence[PartitionLag]], None],
    *,
    interval_s: float,
    stop: threading.Event,
    on_error: Callable[[BaseException], None] | None = None,
) -> threading.Thread:
    """:func:`watch_group_lag` on a daemon thread (it must never keep the process alive);
    the reader is closed when ``stop`` ends it."""

    def run() -> None:
        try:
            watch_group_lag(
                reader.read, publish, interval_s=interval_s, stop=stop, on_error=on_error
            )
        finally:
            reader.close()

    thread = threading.Thread(target=run, name="consumergroup-lag", daemon=True)
    thread.start()
    return thread
