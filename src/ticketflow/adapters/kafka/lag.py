"""Consumer-group lag as the broker sees it: the group's committed offsets against the
partitions' log-end offsets, read without joining the group.

The drift monitor publishes these figures (:mod:`ticketflow.monitoring.lag`); this module
only talks to the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ticketflow.adapters.kafka.config import consumer_config
from ticketflow.adapters.kafka.errors import trapped

logger = logging.getLogger(__name__)

__all__ = ["COORDINATOR_ERRORS", "GroupLagReader", "PartitionLag"]

COORDINATOR_ERRORS = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)
COORDINATOR_ATTEMPTS = 4
COORDINATOR_BACKOFF_S = 0.5


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has never committed on this partition
    end: int  # log-end offset (the high watermark)
    lag: int


class GroupLagReader:
    """Reads one consumer group's lag on one topic.

    A Consumer created with the group's id that never subscribes: it joins nothing and
    commits nothing (auto-commit off), so it cannot disturb the group it watches; it only
    fetches the group's committed offsets. Not AdminClient.list_consumer_group_offsets:
    librdkafka crashes the process (SIGSEGV in rd_kafka_cgrp_op; seen here with 2.16.0, see
    confluentinc/librdkafka#5040) when the group coordinator answers NOT_COORDINATOR to an
    admin client, as it does while the coordinator moves (a broker restart, a fresh
    cluster); a consumer handles that answer.
    """

    def __init__(
        self,
        client_config: Mapping[str, str],
        *,
        group: str,
        topic: str,
        timeout_s: float = 10.0,
    ) -> None:
        config, _ = trapped(client_config)
        self.consumer = Consumer(
            {
                **consumer_config(config, group_id=group),
                # a consumer's metadata request never creates a missing topic (the default;
                # said here because the reader must not)
                "allow.auto.create.topics": False,
            }
        )
        self.group = group
        self.topic = topic
        self.timeout_s = timeout_s

    def partitions(self) -> list[int]:
        metadata = self.consumer.list_topics(self.topic, timeout=self.timeout_s)
        topic = metadata.topics.get(self.topic)
        if topic is None or (
            topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            raise LookupError(f"topic {self.topic!r} does not exist")
        if topic.error is not None:
            raise RuntimeError(f"topic {self.topic!r}: {topic.error}")
        return sorted(topic.partitions)

    def committed(self, partitions: Sequence[int]) -> dict[int, int | None]:
        request = [TopicPartition(self.topic, p) for p in partitions]
        for attempt in range(COORDINATOR_ATTEMPTS):
            try:
                found = self.consumer.committed(request, timeout=self.timeout_s)
                break
            except KafkaException as exc:
                # The group's coordinator moved or is loading (a broker restarted, a fresh
                # cluster): librdkafka looks it up again; ask once it has.
                code = exc.args[0].code() if exc.args else None
                if code not in COORDINATOR_ERRORS or attempt == COORDINATOR_ATTEMPTS - 1:
                    raise
                time.sleep(COORDINATOR_BACKOFF_S * (attempt + 1))
        offsets: dict[int, int | None] = dict.fromkeys(partitions)
        for tp in found:
            # A negative offset is librdkafka's OFFSET_INVALID: nothing committed yet.
            if tp.error is None and tp.offset >= 0:
                offsets[tp.partition] = tp.offset
        return offsets

    def read(self) -> list[PartitionLag]:
        partitions = self.partitions()
        committed = self.committed(partitions)
        lags = []
        for p in partitions:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=self.timeout_s, cached=False
            )
            position = committed[p]
            # Without a commit the workers start at the earliest offset
            # (consumer_auto_offset_reset="earliest"): every retained record is lag.
            behind = high - (low if position is None else position)
            lags.append(PartitionLag(self.topic, p, position, high, max(0, behind)))
        return lags

    def close(self) -> None:
        self.consumer.close()
