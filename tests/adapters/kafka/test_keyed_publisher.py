"""The review desk's producer on the real broker: an acknowledged answer is on the topic; with
the broker unreachable the answer is refused within the timeout and never delivered later."""

from __future__ import annotations

import pytest

from ticketflow.adapters.kafka.clients import DeliveryError, KeyedPublisher, consume
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.devtools.kafka.local_broker import free_port

pytestmark = pytest.mark.integration


def test_publish_returns_once_the_broker_has_the_record(kafka_config: dict[str, str]) -> None:
    topic = f"keyed-publisher-{free_port()}"
    create_topics(kafka_config, [topic], partitions=1, replication=1)
    publisher = KeyedPublisher(kafka_config, topic, timeout_s=10)
    try:
        publisher.publish(b"T-1", b'{"ticket_id": "T-1"}')
        publisher.publish(b"T-2", b'{"ticket_id": "T-2"}')
    finally:
        publisher.close()
    got = list(consume(kafka_config, topic, max_messages=2, timeout_s=30))
    assert [record["ticket_id"] for record in got] == ["T-1", "T-2"]


def test_an_unreachable_broker_is_a_delivery_error_not_a_late_write() -> None:
    publisher = KeyedPublisher(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}"}, "nowhere", timeout_s=1
    )
    with pytest.raises(DeliveryError):
        publisher.publish(b"T-1", b"{}")
    # librdkafka gave the record up (message.timeout.ms): nothing is left to send later.
    assert len(publisher.producer) == 0
