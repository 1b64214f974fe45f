"""The Kafka half of a process that is not a Faust app (the drift monitor): a consume loop
and a fire-and-forget publisher. What happens to each record is the caller's business.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, Producer

from ticketflow.adapters.kafka.config import consumer_config

logger = logging.getLogger(__name__)

__all__ = ["TopicPublisher", "consume_until_stopped"]


class TopicPublisher:
    """``publisher(key, value)`` produces to one topic without waiting for the broker;
    :meth:`close` waits (a while) for what is still queued."""

    def __init__(self, client_config: Mapping[str, str], topic: str) -> None:
        self.topic = topic
        self._producer = Producer(dict(client_config))

    def __call__(self, key: bytes, value: bytes) -> None:
        self._producer.produce(self.topic, key=key, value=value)
        self._producer.poll(0)  # serve delivery reports, so the queue does not only grow

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


def consume_until_stopped(
    client_config: Mapping[str, str],
    topic: str,
    *,
    group_id: str,
    handle: Callable[[bytes | None, float], object],
    tick: Callable[[float], object],
    stop: threading.Event,
    poll_batch: int = 500,
) -> None:
    """Consume ``topic`` as ``group_id`` until ``stop`` is set: ``handle(value, now)`` for
    each record, then ``tick(now)`` after every poll (at least once a second), ``now`` being
    ``time.monotonic()`` when the poll returned. Records that come back as errors are
    logged and skipped.

    Offsets auto-commit and a new group starts at the earliest record: for consumers that
    may miss or repeat a few records around a restart (a sample, like the monitor's).
    """
    consumer = Consumer(
        consumer_config(client_config, group_id=group_id, offset_reset="earliest", auto_commit=True)
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            messages: list[Any] = consumer.consume(num_messages=poll_batch, timeout=1.0)
            now = time.monotonic()
            for message in messages:
                if message.error():
                    logger.warning("consumer error: %s", message.error())
                    continue
                handle(message.value(), now)
            tick(now)
    finally:
        consumer.close()
