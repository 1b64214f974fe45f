"""Kafka producers and consumers (confluent-kafka): ``ticketflow produce/consume``, the
reloader's announcement consumer and reading a topic's last records.

The producers take events, not files: reading a ticket file (and reporting its broken rows)
is :mod:`ticketflow.data.events`; the CLI hands its events to :func:`produce_events`.

Callers pass the base connection config (``bootstrap.servers`` and security settings); the
functions here add their own keys on top (:func:`.config.consumer_config`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ticketflow.adapters.kafka.config import consumer_config
from ticketflow.adapters.kafka.errors import ErrorTrap, trapped
from ticketflow.data.progress import progress as progress_bar
from ticketflow.data.wire import encode_event

logger = logging.getLogger(__name__)

__all__ = [
    "DeliveryError",
    "Headers",
    "KeyedPublisher",
    "Outbound",
    "consume",
    "decode_value",
    "encode_event",
    "latest_consumer",
    "produce_events",
    "produce_raw",
    "send_records",
    "tail_values",
]

# Defaults under the caller's config: a caller may override them (e.g. a managed cluster
# without idempotence support), but by default a retried send never duplicates a ticket.
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 5,
}


class DeliveryError(RuntimeError):
    """Some messages were not acknowledged by the broker."""


Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Outbound:
    """One record to produce: its topic, key, value and headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


def _producer(producer_config: dict[str, str]) -> tuple[Producer, ErrorTrap]:
    config, trap = trapped({**_PRODUCER_DEFAULTS, **producer_config})
    return Producer(config), trap


@dataclass(frozen=True)
class _SendPlan:
    """How one run of :func:`_send` is paced, shown and awaited."""

    where: str = ""  # " to 'topic'" in messages, or "" for records to many topics
    desc: str = "producing"  # the progress bar's label
    rate: float | None = None  # events per second, None: as fast as the broker takes them
    progress: bool = False
    flush_timeout_s: float = 120.0
    total: int | None = None  # for the progress bar, when known

    @classmethod
    def to_topic(cls, topic: str, **options: Any) -> _SendPlan:
        return cls(where=f" to {topic!r}", desc=f"producing to {topic}", **options)


def _to_topic(topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> Iterator[Outbound]:
    return (Outbound(topic, key, value) for key, value in messages)


def send_records(
    producer_config: Mapping[str, Any], records: Iterable[Outbound], *, flush_timeout_s: float
) -> int:
    """Produce ``records`` (each to its own topic, with its headers), wait for every
    acknowledgement and return the count; raise :class:`DeliveryError` if any failed."""
    producer, trap = _producer(dict(producer_config))
    return _send(producer, trap, records, _SendPlan(flush_timeout_s=flush_timeout_s))


def _send(producer: Producer, trap: ErrorTrap, records: Iterable[Outbound], plan: _SendPlan) -> int:
    """Produce, wait for every acknowledgement and return the count; raise if any failed."""
    rate, where = plan.rate, plan.where
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    start = time.monotonic()
    bar = progress_bar(
        records, desc=plan.desc, unit="msg", total=plan.total, disable=not plan.progress
    )
    for record in bar:
        if rate is not None:
            # Pace against the schedule, not the previous send, so slow polls do not add up.
            delay = start + count / rate - time.monotonic()
            if delay > 0:
                producer.poll(delay)
        _produce_one(producer, record, on_delivery)
        producer.poll(0)
        trap.check()
        count += 1
    deadline = time.monotonic() + plan.flush_timeout_s
    while (remaining := producer.flush(0.25)) and time.monotonic() < deadline:
        trap.check()
    if remaining:
        raise DeliveryError(
            f"{remaining} of {count} messages{where} were not acknowledged "
            f"within {plan.flush_timeout_s:.0f} s"
        )
    if failures:
        raise DeliveryError(
            f"{len(failures)} of {count} messages{where} failed; first error: {failures[0]}"
        )
    logger.info("produced %d messages%s", count, where)
    return count


def _produce_one(
    producer: Producer,
    record: Outbound,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    while True:
        try:
            if record.headers:
                producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    on_delivery=on_delivery,
                )
            else:
                producer.produce(
                    record.topic, key=record.key, value=record.value, on_delivery=on_delivery
                )
            return
        except BufferError:
            # The local queue is full: serve delivery reports until there is room again.
            producer.poll(0.5)


def produce_events(
    producer_config: dict[str, str],
    topic: str,
    events: Iterable[dict[str, Any]],
    *,
    rate: float | None = None,
    progress: bool = True,
    flush_timeout_s: float = 120.0,
) -> int:
    """Publish events as JSON keyed by ``ticket_id``; return how many the broker acknowledged.

    ``rate`` caps the throughput in events per second. Raises ``DeliveryError`` if any event
    was not delivered, ``ValueError`` for an event without ``ticket_id``.
    """

    def messages() -> Iterator[tuple[bytes | None, bytes]]:
        for index, event in enumerate(events, start=1):
            ticket_id = event.get("ticket_id")
            if ticket_id is None or ticket_id == "":
                raise ValueError(f"event {index} has no ticket_id")
            yield str(ticket_id).strip().encode("utf-8"), encode_event(event)

    producer, trap = _producer(producer_config)
    total = len(events) if isinstance(events, Sized) else None
    if total is not None:
        logger.info("producing %d events to %s", total, topic)
    plan = _SendPlan.to_topic(
        topic, rate=rate, progress=progress, flush_timeout_s=flush_timeout_s, total=total
    )
    return _send(producer, trap, _to_topic(topic, messages()), plan)


def produce_raw(
    producer_config: dict[str, str],
    topic: str,
    payloads: Iterable[tuple[bytes | None, bytes]],
) -> int:
    """Publish raw ``(key, value)`` bytes as given, e.g. malformed events for tests."""
    producer, trap = _producer(producer_config)
    return _send(producer, trap, _to_topic(topic, payloads), _SendPlan.to_topic(topic))


def decode_value(value: bytes | None) -> dict[str, Any]:
    """A message value as a JSON object, or ``{"_raw": text}`` when it is not one."""
    if value is None:
        return {"_raw": None}
    text = value.decode("utf-8", errors="replace")
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return {"_raw": text}
    return decoded if isinstance(decoded, dict) else {"_raw": text}


def consume(
    client_config: Mapping[str, str],
    topic: str,
    *,
    max_messages: int | None,
    timeout_s: float,
    group_id: str | None = None,
    from_beginning: bool = True,
    read_committed: bool = False,
) -> Generator[dict[str, Any], None, None]:
    """Yield the decoded values of ``topic`` until ``max_messages`` or ``timeout_s`` of quiet.

    Without ``group_id`` a throwaway group (no committed offsets) reads the topic, so other
    consumers are not disturbed. The consumer is closed when the generator ends or is closed.
    """
    config = {
        **consumer_config(
            client_config,
            group_id=group_id or f"ticketflow-consume-{uuid.uuid4().hex}",
            offset_reset="earliest" if from_beginning else "latest",
            # Committing offsets for a throwaway group would only leave clutter on the broker.
            auto_commit=group_id is not None,
        ),
        # read_committed hides records of aborted transactions (exactly-once producers).
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
    }
    config, trap = trapped(config)
    consumer = Consumer(config)
    # The quiet period restarts at assignment: joining a group can take seconds by itself.
    last_activity = [time.monotonic()]

    def on_assign(_consumer: Consumer, _partitions: list[Any]) -> None:
        last_activity[0] = time.monotonic()

    count = 0
    try:
        consumer.subscribe([topic], on_assign=on_assign)
        while max_messages is None or count < max_messages:
            left = last_activity[0] + timeout_s - time.monotonic()
            if left <= 0:
                break
            msg = consumer.poll(min(left, 0.25))
            trap.check()
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal():
                    raise KafkaException(error)
                logger.warning("consumer error on %s: %s", topic, error)
                continue
            last_activity[0] = time.monotonic()
            count += 1
            yield decode_value(msg.value())
    finally:
        consumer.close()
        logger.info("consumed %d messages from %s", count, topic)


def latest_consumer(
    config: Mapping[str, str],
    topic: str,
    *,
    group_id: str,
    on_assign: Callable[[], None],
) -> Any:
    """A consumer of ``topic`` from its end (records produced from now on), committing
    nothing; ``on_assign()`` runs each time partitions are assigned, i.e. once the
    subscription stands. Callers ``poll(timeout)`` it and ``close()`` it.
    """
    consumer = Consumer(consumer_config(config, group_id=group_id, offset_reset="latest"))

    def assigned(_consumer: Consumer, _partitions: list[Any]) -> None:
        on_assign()

    consumer.subscribe([topic], on_assign=assigned)
    return consumer


def tail_values(
    client_config: Mapping[str, str],
    topic: str,
    count: int,
    *,
    group_id: str,
    timeout_s: float = 10.0,
) -> list[bytes | None]:
    """The values of the last ``count`` records of each partition of ``topic`` (partition by
    partition as they arrive; an empty list when the topic does not exist).

    Reads by assignment from the watermarks: ``group_id`` joins no group and commits nothing.
    Records that come back as errors are left out.
    """
    consumer = Consumer(consumer_config(client_config, group_id=group_id))
    values: list[bytes | None] = []
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        partitions = list(metadata.topics[topic].partitions) if topic in metadata.topics else []
        assignment = []
        remaining = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            start = max(low, high - count)
            remaining += high - start
            assignment.append(TopicPartition(topic, partition, start))
        consumer.assign(assignment)
        while remaining > 0:
            messages = consumer.consume(num_messages=500, timeout=5.0)
            if not messages:
                break
            for message in messages:
                remaining -= 1
                if not message.error():
                    values.append(message.value())
    finally:
        consumer.close()
    return values


class KeyedPublisher:
    """One long-lived producer that publishes single records and waits for each one's answer
    (the review desk's feedback): :meth:`publish` returns once the broker acknowledged the
    record, or raises :class:`DeliveryError` once librdkafka has given it up.

    ``message.timeout.ms`` is the wait: a record that was not acknowledged by then is failed by
    librdkafka itself, so an answer reported as failed is never delivered later.
    """

    def __init__(self, producer_config: Mapping[str, Any], topic: str, *, timeout_s: float) -> None:
        config = {**dict(producer_config), "message.timeout.ms": int(timeout_s * 1000)}
        self.producer, self.trap = _producer(config)
        self.topic = topic
        self.timeout_s = timeout_s

    def publish(self, key: bytes, value: bytes) -> None:
        outcome: list[KafkaError | None] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            outcome.append(err)

        _produce_one(self.producer, Outbound(self.topic, key, value), on_delivery)
        # librdkafka fails the record by itself at message.timeout.ms; the margin covers the
        # time its timer scan takes to notice.
        deadline = time.monotonic() + self.timeout_s + 5.0
        while not outcome and time.monotonic() < deadline:
            self.producer.poll(0.1)
        if not outcome:
            self.producer.purge()
            self.producer.poll(0)
            raise DeliveryError(f"no answer from the broker within {self.timeout_s:.0f} s")
        if outcome[0] is not None:
            reason = self.trap.transient or outcome[0]
            raise DeliveryError(f"not published to {self.topic!r}: {reason}")

    def close(self) -> None:
        self.producer.flush(1.0)
