"""Read a topic once, from a start to the end it had when reading began, and publish records
with headers: the Kafka side of ``ticketflow dlq list|show|replay``.

Reading uses ``assign`` and the partitions' watermarks, not a consumer group: nothing is
committed (an inspection must not move anybody's offsets), and reading stops at the end the
topic had when it began instead of waiting for more. A partition that stops answering before
its end raises after ``idle_timeout_s`` rather than hanging.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ticketflow.adapters.kafka.clients import DeliveryError, Headers, Outbound, send_records
from ticketflow.adapters.kafka.config import consumer_config
from ticketflow.adapters.kafka.errors import trapped

logger = logging.getLogger(__name__)

__all__ = [
    "Outbound",
    "PublishError",
    "Record",
    "TopicNotFoundError",
    "publish",
    "read_topic",
]


class TopicNotFoundError(LookupError):
    """The topic to read does not exist on the cluster."""


class PublishError(RuntimeError):
    """Some records were not acknowledged by the broker."""


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


def _bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else value


def _headers(message: Message) -> Headers:
    raw = message.headers() or []
    # A consumed message's headers are a list of pairs; the type also allows a dict.
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((name, _bytes(value)) for name, value in pairs)


def _timestamp(message: Message) -> int | None:
    kind, value = message.timestamp()
    # TIMESTAMP_NOT_AVAILABLE (0) carries no time; -1 is librdkafka's "none" as well.
    return int(value) if kind != 0 and value >= 0 else None


def read_topic(
    client_config: Mapping[str, Any],
    topic: str,
    *,
    since_ms: int | None = None,
    timeout_s: float = 10.0,
    idle_timeout_s: float = 30.0,
) -> Iterator[Record]:
    """Yield every record of ``topic`` (partition by partition as they arrive), from the
    beginning, or from the first record stamped at or after ``since_ms``, to the end each
    partition had when reading began.

    Raises :class:`TopicNotFoundError` when the topic does not exist, ``TimeoutError`` when no
    record came for ``idle_timeout_s`` while some partition was short of its end.
    """
    config, trap = trapped(
        {
            **consumer_config(
                client_config,
                # A throwaway id: assign() needs one, and nothing is ever committed under it.
                group_id=f"ticketflow-dlq-reader-{uuid.uuid4().hex}",
                offset_reset="earliest",
            ),
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )
    consumer = Consumer(config)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        trap.check()
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise TopicNotFoundError(f"topic {topic!r} does not exist")
        ends: dict[int, int] = {}
        starts: dict[int, int] = {}
        for partition in sorted(described.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s, cached=False
            )
            ends[partition] = high
            starts[partition] = low
        if since_ms is not None:
            wanted = [TopicPartition(topic, p, since_ms) for p in ends]
            for found in consumer.offsets_for_times(wanted, timeout=timeout_s):
                # -1: no record at or after that time, so nothing to read there.
                starts[found.partition] = (
                    found.offset if found.offset >= 0 else ends[found.partition]
                )
        pending = {p for p in ends if starts[p] < ends[p]}
        logger.debug("reading %s: partitions %s from %s to %s", topic, sorted(ends), starts, ends)
        if not pending:
            return
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
        last_progress = time.monotonic()
        while pending:
            messages = consumer.consume(num_messages=500, timeout=0.5)
            trap.check()
            if not messages:
                if time.monotonic() - last_progress > idle_timeout_s:
                    raise TimeoutError(
                        f"reading {topic!r}: partitions {sorted(pending)} sent nothing for "
                        f"{idle_timeout_s:.0f} s before their end"
                    )
                continue
            last_progress = time.monotonic()
            for message in messages:
                partition, offset = message.partition(), message.offset()
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise KafkaException(error)
                if partition is None or offset is None:
                    continue
                if partition not in pending or offset >= ends[partition]:
                    continue  # written after reading began: not part of this read
                yield Record(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    timestamp_ms=_timestamp(message),
                    key=message.key(),
                    value=message.value(),
                    headers=_headers(message),
                )
                if offset >= ends[partition] - 1:
                    pending.discard(partition)
    finally:
        consumer.close()


def publish(
    client_config: Mapping[str, Any],
    records: Iterable[Outbound],
    *,
    flush_timeout_s: float = 60.0,
) -> int:
    """Produce ``records`` (idempotent producer), wait for every acknowledgement and return
    the count; raise :class:`PublishError` naming how many failed and the first error."""
    try:
        return send_records(client_config, records, flush_timeout_s=flush_timeout_s)
    except DeliveryError as exc:
        raise PublishError(str(exc)) from exc
