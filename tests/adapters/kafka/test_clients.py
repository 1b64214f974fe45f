"""Producer/consumer logic without a broker: encoding, pacing, failures, consumer settings.

Kafka I/O itself is covered by the integration tests; here ``Producer``/``Consumer`` are
replaced by small fakes that record what the client code asks of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from ticketflow.adapters.kafka import clients
from ticketflow.adapters.kafka.clients import (
    DeliveryError,
    consume,
    decode_value,
    encode_event,
    latest_consumer,
    produce_events,
    produce_raw,
    tail_values,
)
from ticketflow.data.events import FileEvents

pytestmark = pytest.mark.unit

# --- encoding and decoding ----------------------------------------------------------------


def test_encode_event_writes_iso_datetimes_and_utf8() -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    raw = encode_event({"ticket_id": "ü-1", "created_at": when})
    assert json.loads(raw.decode("utf-8")) == {
        "ticket_id": "ü-1",
        "created_at": "2024-05-01T12:30:00+00:00",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"not json", {"_raw": "not json"}),
        (b"[1, 2]", {"_raw": "[1, 2]"}),
        (b"\xff{", {"_raw": "\ufffd{"}),
        (None, {"_raw": None}),
    ],
)
def test_decode_value(value: bytes | None, expected: dict[str, Any]) -> None:
    assert decode_value(value) == expected


# --- producer logic with a fake Producer --------------------------------------------------


class FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class FakeProducer:
    """Records produce() calls; delivery reports fire on poll/flush like librdkafka's."""

    instances: ClassVar[list[FakeProducer]] = []
    fail_keys: ClassVar[set[bytes]] = set()

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self._pending: list[tuple[Callable[..., None], bytes | None]] = []
        FakeProducer.instances.append(self)

    def produce(
        self, topic: str, *, key: bytes | None, value: bytes, on_delivery: Callable[..., None]
    ) -> None:
        self.sent.append((topic, key, value))
        self._pending.append((on_delivery, key))

    def poll(self, timeout: float = 0) -> int:
        pending, self._pending = self._pending, []
        for callback, key in pending:
            error = FakeError("broker said no") if key in self.fail_keys else None
            callback(error, None)
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.instances = []
    FakeProducer.fail_keys = set()
    monkeypatch.setattr(clients, "Producer", FakeProducer)
    return FakeProducer


def test_produce_events_sends_a_files_good_rows(
    tmp_path: Path, fake_producer: type[FakeProducer]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"ticket_id": "T-1", "body": "a"}\nnope\n{"ticket_id": "T-3", "body": "c"}\n',
        encoding="utf-8",
    )
    base = {"bootstrap.servers": "broker:9092", "security.protocol": "SASL_SSL"}
    events = FileEvents(path)
    assert produce_events(base, "tickets", events, progress=False) == 2
    assert [line for line, _ in events.skipped] == [2]
    producer = fake_producer.instances[0]
    assert producer.config["bootstrap.servers"] == "broker:9092"
    assert producer.config["security.protocol"] == "SASL_SSL"
    assert producer.config["enable.idempotence"] is True
    assert [(t, k) for t, k, _ in producer.sent] == [("tickets", b"T-1"), ("tickets", b"T-3")]
    assert json.loads(producer.sent[0][2]) == {"ticket_id": "T-1", "body": "a"}


def test_produce_events_raises_when_a_delivery_fails(fake_producer: type[FakeProducer]) -> None:
    fake_producer.fail_keys = {b"T-2"}
    events = [{"ticket_id": f"T-{i}", "body": "x"} for i in range(1, 4)]
    with pytest.raises(DeliveryError, match=r"1 of 3 messages.*broker said no"):
        produce_events({"bootstrap.servers": "b"}, "tickets", events, progress=False)


def test_produce_events_requires_a_ticket_id(fake_producer: type[FakeProducer]) -> None:
    with pytest.raises(ValueError, match="event 2 has no ticket_id"):
        produce_events(
            {"bootstrap.servers": "b"},
            "tickets",
            [{"ticket_id": "a"}, {"body": "x"}],
            progress=False,
        )


def test_produce_events_rate_must_be_positive(fake_producer: type[FakeProducer]) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        produce_events({}, "tickets", [{"ticket_id": "a"}], rate=0, progress=False)


def test_produce_raw_sends_bytes_as_given(fake_producer: type[FakeProducer]) -> None:
    count = produce_raw({}, "tickets", [(None, b"not json"), (b"k", b"{}")])
    assert count == 2
    assert fake_producer.instances[0].sent == [
        ("tickets", None, b"not json"),
        ("tickets", b"k", b"{}"),
    ]


# --- consumer logic with a fake Consumer --------------------------------------------------


class FakeMessage:
    def __init__(self, value: bytes | None) -> None:
        self._value = value

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value


class FakeConsumer:
    instances: ClassVar[list[FakeConsumer]] = []
    queue: ClassVar[list[bytes | None]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.closed = False
        self.messages: Iterator[bytes | None] = iter(list(self.queue))
        FakeConsumer.instances.append(self)

    def subscribe(self, topics: list[str], on_assign: Callable[..., None]) -> None:
        self.topics = topics
        on_assign(self, [])

    def poll(self, timeout: float) -> FakeMessage | None:
        try:
            return FakeMessage(next(self.messages))
        except StopIteration:
            return None

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_consumer(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    FakeConsumer.instances = []
    FakeConsumer.queue = [b'{"ticket_id": "a"}', b"garbage", b'{"ticket_id": "c"}']
    monkeypatch.setattr(clients, "Consumer", FakeConsumer)
    return FakeConsumer


def test_consume_decodes_stops_at_max_and_closes(fake_consumer: type[FakeConsumer]) -> None:
    got = list(consume({"bootstrap.servers": "b"}, "out", max_messages=2, timeout_s=1.0))
    assert got == [{"ticket_id": "a"}, {"_raw": "garbage"}]
    consumer = fake_consumer.instances[0]
    assert consumer.closed and consumer.topics == ["out"]
    assert consumer.config["group.id"].startswith("ticketflow-consume-")
    assert consumer.config["auto.offset.reset"] == "earliest"
    assert consumer.config["enable.auto.commit"] is False


def test_consume_stops_after_quiet_timeout(fake_consumer: type[FakeConsumer]) -> None:
    got = list(
        consume({}, "out", max_messages=None, timeout_s=0.05, group_id="g", from_beginning=False)
    )
    assert len(got) == 3
    consumer = fake_consumer.instances[0]
    assert consumer.config["group.id"] == "g"
    assert consumer.config["auto.offset.reset"] == "latest"


def test_consume_closes_when_the_caller_stops_early(fake_consumer: type[FakeConsumer]) -> None:
    stream = consume({}, "out", max_messages=None, timeout_s=1.0)
    assert next(stream) == {"ticket_id": "a"}
    stream.close()
    assert fake_consumer.instances[0].closed


def test_latest_consumer_reads_from_the_end_and_reports_assignment(
    fake_consumer: type[FakeConsumer],
) -> None:
    assigned: list[bool] = []
    base = {"bootstrap.servers": "b:9092", "security.protocol": "SSL"}
    consumer = latest_consumer(
        base, "model-updates", group_id="reload-1", on_assign=lambda: assigned.append(True)
    )
    assert consumer is fake_consumer.instances[0]
    assert consumer.topics == ["model-updates"] and assigned == [True]
    assert consumer.config == {
        **base,
        "group.id": "reload-1",
        "auto.offset.reset": "latest",
        "enable.auto.commit": False,
    }
    assert consumer.poll(0.1).value() == b'{"ticket_id": "a"}'
    consumer.close()
    assert consumer.closed


class FakeTailMessage(FakeMessage):
    def __init__(self, value: bytes | None, failed: bool = False) -> None:
        super().__init__(value)
        self.failed = failed

    def error(self) -> Any:
        return "broken" if self.failed else None


class FakeTailConsumer:
    """Two partitions: 0 holds offsets 0..4, 1 holds 3..3 (offsets 0..2 deleted)."""

    instances: ClassVar[list[FakeTailConsumer]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.assigned: list[tuple[int, int]] = []
        self.closed = False
        FakeTailConsumer.instances.append(self)

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={"mon": SimpleNamespace(partitions={0: None, 1: None})})

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        return {0: (0, 5), 1: (3, 4)}[tp.partition]

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in partitions]
        self.pending = [
            FakeTailMessage(f"{p}-{o}".encode(), failed=(p, o) == (0, 3))
            for p, start in self.assigned
            for o in range(start, {0: 5, 1: 4}[p])
        ]

    def consume(self, num_messages: int, timeout: float) -> list[FakeTailMessage]:
        batch, self.pending = self.pending[:num_messages], self.pending[num_messages:]
        return batch

    def close(self) -> None:
        self.closed = True


def test_tail_values_reads_the_last_records_of_each_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeTailConsumer.instances = []
    monkeypatch.setattr(clients, "Consumer", FakeTailConsumer)
    values = tail_values({"bootstrap.servers": "b"}, "mon", 2, group_id="report")
    consumer = FakeTailConsumer.instances[0]
    assert consumer.assigned == [(0, 3), (1, 3)]
    assert values == [b"0-4", b"1-3"]  # 0-3 came back as an error
    assert consumer.config["group.id"] == "report"
    assert consumer.config["enable.auto.commit"] is False
    assert consumer.closed
    assert tail_values({}, "missing", 2, group_id="report") == []
