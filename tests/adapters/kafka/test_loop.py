"""The monitor's Kafka half (adapters/kafka/loop.py) and reading a topic's last records
(clients.tail_values), on the real broker."""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.fixtures.kafka import TopicNamesFactory
from ticketflow.adapters.kafka.clients import produce_raw, tail_values
from ticketflow.adapters.kafka.loop import TopicPublisher, consume_until_stopped

pytestmark = pytest.mark.integration


def test_loop_hands_every_record_over_and_the_publisher_echoes_them(
    kafka_config: dict[str, str], topic_names: TopicNamesFactory
) -> None:
    names = topic_names("loop")
    produce_raw(kafka_config, names.tickets, [(None, f"v{i}".encode()) for i in range(6)])
    publisher = TopicPublisher(kafka_config, names.labeled)
    stop = threading.Event()
    seen: list[bytes | None] = []
    ticks: list[float] = []

    def handle(value: bytes | None, now: float) -> None:
        seen.append(value)
        publisher(b"key", (value or b"") + b"!")
        if len(seen) == 6:
            stop.set()

    thread = threading.Thread(
        target=consume_until_stopped,
        args=(kafka_config, names.tickets),
        kwargs={
            "group_id": f"loop-{uuid.uuid4().hex[:8]}",
            "handle": handle,
            "tick": ticks.append,
            "stop": stop,
        },
    )
    thread.start()
    thread.join(timeout=90)
    publisher.close()
    assert not thread.is_alive()
    assert sorted(seen) == [f"v{i}".encode() for i in range(6)]  # from the earliest record
    assert ticks and ticks == sorted(ticks)

    # One key, so one partition, in the order they were published: the last two of them.
    tail = tail_values(kafka_config, names.labeled, 2, group_id=f"tail-{uuid.uuid4().hex[:8]}")
    assert tail == [value + b"!" for value in seen[-2:] if value is not None]
    missing = f"missing-{uuid.uuid4().hex}"
    assert tail_values(kafka_config, missing, 2, group_id="tail") == []
