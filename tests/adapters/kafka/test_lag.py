"""Consumer-group lag read from the broker (adapters/kafka/lag.py).

Runs against the real broker with a group that has no live member: exactly the case where the
workers' own gauge is gone (every worker dead).
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.fixtures.kafka import TopicNamesFactory
from ticketflow.adapters.kafka.lag import COORDINATOR_ERRORS, GroupLagReader, PartitionLag


def produce(config: dict[str, str], topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer(config)
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def commit(config: dict[str, str], group: str, offsets: list[TopicPartition]) -> None:
    # What a worker leaves behind: committed offsets, and then no member at all.
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": "false"})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def transient(exc: BaseException) -> bool:
    if not isinstance(exc, KafkaException):
        return False
    return bool(exc.args[0].retriable() or exc.args[0].code() in COORDINATOR_ERRORS)


def read_when_ready(reader: GroupLagReader, timeout: float = 90.0) -> list[PartitionLag]:
    # A fresh broker needs a while to load its offsets topic and settle the group's
    # coordinator (the monitor's loop simply reads again at its next interval).
    deadline = time.monotonic() + timeout
    while True:
        try:
            return reader.read()
        except KafkaException as exc:
            if time.monotonic() > deadline or not transient(exc):
                raise
            time.sleep(0.5)


@pytest.mark.integration
def test_group_lag_from_the_broker_with_no_member_alive(
    kafka_config: dict[str, str], topic_names: TopicNamesFactory
) -> None:
    topic = topic_names("lag").tickets  # 3 partitions
    group = f"lag-group-{uuid.uuid4().hex[:8]}"
    produce(kafka_config, topic, {0: 10, 1: 5})
    reader = GroupLagReader(kafka_config, group=group, topic=topic)

    # Never committed: the workers would start at the earliest offset, so all of it is lag.
    assert read_when_ready(reader) == [
        PartitionLag(topic, 0, None, 10, 10),
        PartitionLag(topic, 1, None, 5, 5),
        PartitionLag(topic, 2, None, 0, 0),
    ]

    commit(kafka_config, group, [TopicPartition(topic, 0, 4), TopicPartition(topic, 2, 0)])
    produce(kafka_config, topic, {2: 3})
    assert read_when_ready(reader) == [
        PartitionLag(topic, 0, 4, 10, 6),
        PartitionLag(topic, 1, None, 5, 5),
        PartitionLag(topic, 2, 0, 3, 3),
    ]
    reader.close()
