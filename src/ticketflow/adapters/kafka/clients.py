"""User-facing Kafka producer and consumer (confluent-kafka) behind ``ticketflow produce/consume``.

The producer checks little on purpose: the worker validates every event and dead-letters the
bad ones. It only skips what it cannot send at all (unparsable lines, rows without a
``ticket_id`` for the key, values that do not serialize) and reports them by line number so
the user can fix their file.

Callers pass the base connection config (``bootstrap.servers`` and security settings); the
functions here add their own keys on top.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from ticketflow.adapters.kafka.errors import ErrorTrap, trapped
from ticketflow.data.datasets import (
    DEFAULT_MAPPING,
    ColumnMapping,
    map_record,
    read_table,
    rows_to_dicts,
)
from ticketflow.data.progress import progress as progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "DeliveryError",
    "Headers",
    "Outbound",
    "ProduceReport",
    "consume",
    "encode_event",
    "iter_file_events",
    "produce_events",
    "produce_file",
    "produce_raw",
    "send_records",
]

# Defaults under the caller's config: a caller may override them (e.g. a managed cluster
# without idempotence support), but by default a retried send never duplicates a ticket.
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 5,
}
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
# A CSV's first line is its header, so data record n sits on spreadsheet row n + 1.
_CSV_HEADER_LINES = 1


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


@dataclass
class ProduceReport:
    sent: int
    # (line number in the file, 1-based; for CSV the record number + header offset), reason
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def encode_event(event: dict[str, Any]) -> bytes:
    """The wire form of an event: UTF-8 JSON; datetimes as ISO 8601, NaN refused."""
    return json.dumps(event, ensure_ascii=False, default=_json_default, allow_nan=False).encode(
        "utf-8"
    )


def _check_event(event: dict[str, Any], max_bytes: int | None) -> str | None:
    """Why ``event`` cannot be sent, or None when it can."""
    ticket_id = event.get("ticket_id")
    if ticket_id is None or (isinstance(ticket_id, str) and not ticket_id.strip()):
        return "missing ticket_id"
    if not isinstance(ticket_id, str):
        return f"ticket_id must be a string, got {type(ticket_id).__name__}"
    try:
        size = len(encode_event(event))
    except (TypeError, ValueError) as exc:
        return f"cannot serialize: {exc}"
    if max_bytes is not None and size > max_bytes:
        return f"event is {size} bytes, over the limit of {max_bytes}"
    return None


def iter_file_events(
    path: Path,
    mapping: ColumnMapping = DEFAULT_MAPPING,
    *,
    max_bytes: int | None = None,
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield ``(line_no, event, error)`` for each record of a ticket file.

    JSONL (``.jsonl``/``.ndjson``) is parsed line by line so one broken line does not stop
    the file; blank lines are ignored. Other formats go through ``read_table``; their number
    is the record number, plus the header line for CSV. Exactly one of ``event`` and
    ``error`` is set. Ids are generated as ``<stem>-<record>`` only when the mapping has no
    id column (or, for tables, when the file lacks it), as ``load_labeled`` does.
    """
    if path.suffix.lower() in _JSONL_SUFFIXES:
        yield from _iter_jsonl(path, mapping, max_bytes)
        return
    frame = read_table(path)
    offset = _CSV_HEADER_LINES if path.suffix.lower() == ".csv" else 0
    for record_no, event in enumerate(
        rows_to_dicts(frame, mapping, id_prefix=path.stem, source=path), 1
    ):
        error = _check_event(event, max_bytes)
        yield record_no + offset, (None if error else event), error


def _iter_jsonl(
    path: Path, mapping: ColumnMapping, max_bytes: int | None
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    record_no = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            record_no += 1
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, None, f"invalid JSON: {exc}"
                continue
            if not isinstance(item, dict):
                yield line_no, None, f"expected a JSON object, got {_json_kind(item)}"
                continue
            generated = f"{path.stem}-{record_no}" if mapping.ticket_id is None else None
            event = map_record(item, mapping, generated_id=generated)
            error = _check_event(event, max_bytes)
            yield line_no, (None if error else event), error


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, float) else type(value).__name__)


def _producer(producer_config: dict[str, str]) -> tuple[Producer, ErrorTrap]:
    config, trap = trapped({**_PRODUCER_DEFAULTS, **producer_config})
    return Producer(config), trap


def _send_all(
    producer: Producer,
    trap: ErrorTrap,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    *,
    rate: float | None,
    progress: bool,
    flush_timeout_s: float,
    total: int | None = None,
) -> int:
    """Produce (key, value) pairs to ``topic``: :func:`_send` of one topic."""
    return _send(
        producer,
        trap,
        (Outbound(topic, key, value) for key, value in messages),
        where=f" to {topic!r}",
        desc=f"producing to {topic}",
        rate=rate,
        progress=progress,
        flush_timeout_s=flush_timeout_s,
        total=total,
    )


def send_records(
    producer_config: Mapping[str, Any], records: Iterable[Outbound], *, flush_timeout_s: float
) -> int:
    """Produce ``records`` (each to its own topic, with its headers), wait for every
    acknowledgement and return the count; raise :class:`DeliveryError` if any failed."""
    producer, trap = _producer(dict(producer_config))
    return _send(
        producer,
        trap,
        records,
        where="",
        desc="producing",
        rate=None,
        progress=False,
        flush_timeout_s=flush_timeout_s,
    )


def _send(  # noqa: PLR0913 -- removed by the kafka-room / rooms-split branches
    producer: Producer,
    trap: ErrorTrap,
    records: Iterable[Outbound],
    *,
    where: str,
    desc: str,
    rate: float | None,
    progress: bool,
    flush_timeout_s: float,
    total: int | None = None,
) -> int:
    """Produce, wait for every acknowledgement and return the count; raise if any failed."""
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    start = time.monotonic()
    bar = progress_bar(records, desc=desc, unit="msg", total=total, disable=not progress)
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
    deadline = time.monotonic() + flush_timeout_s
    while (remaining := producer.flush(0.25)) and time.monotonic() < deadline:
        trap.check()
    if remaining:
        raise DeliveryError(
            f"{remaining} of {count} messages{where} were not acknowledged "
            f"within {flush_timeout_s:.0f} s"
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
    return _send_all(
        producer,
        trap,
        topic,
        messages(),
        rate=rate,
        progress=progress,
        flush_timeout_s=flush_timeout_s,
        total=total,
    )


def produce_file(
    producer_config: dict[str, str],
    topic: str,
    path: Path,
    *,
    mapping: ColumnMapping = DEFAULT_MAPPING,
    rate: float | None = None,
    progress: bool = True,
    max_bytes: int | None = None,
) -> ProduceReport:
    """Publish every sendable record of a ticket file; report what was sent and skipped."""
    skipped: list[tuple[int, str]] = []

    def events() -> Iterator[dict[str, Any]]:
        for line_no, event, error in iter_file_events(path, mapping, max_bytes=max_bytes):
            if event is None:
                skipped.append((line_no, error or "unknown error"))
                if len(skipped) <= 10:
                    logger.warning("%s:%d: skipped: %s", path, line_no, error)
                continue
            yield event

    sent = produce_events(producer_config, topic, events(), rate=rate, progress=progress)
    if len(skipped) > 10:
        logger.warning("%s: skipped %d records in all", path, len(skipped))
    return ProduceReport(sent=sent, skipped=skipped)


def produce_raw(
    producer_config: dict[str, str],
    topic: str,
    payloads: Iterable[tuple[bytes | None, bytes]],
) -> int:
    """Publish raw ``(key, value)`` bytes as given, e.g. malformed events for tests."""
    producer, trap = _producer(producer_config)
    return _send_all(
        producer,
        trap,
        topic,
        payloads,
        rate=None,
        progress=False,
        flush_timeout_s=120.0,
    )


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
    consumer_config: dict[str, str],
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
    config: dict[str, Any] = {
        **consumer_config,
        "group.id": group_id or f"ticketflow-consume-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        # Committing offsets for a throwaway group would only leave clutter on the broker.
        "enable.auto.commit": group_id is not None,
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
    """A consumer of ``topic`` from its latest offset, committing nothing (a reader that must
    see every new record, like a worker's hot reload); ``on_assign`` runs once partitions are
    assigned. The caller polls (``.poll(timeout)``) and closes it."""
    consumer = Consumer(
        {
            **config,
            "group.id": group_id,
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic], on_assign=lambda _consumer, _partitions: on_assign())
    return consumer
