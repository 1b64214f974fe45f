"""Producer/consumer logic without a broker: file parsing, line numbers, encoding, failures.

Kafka I/O itself is covered by the integration tests; here ``Producer``/``Consumer`` are
replaced by small fakes that record what the client code asks of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ticketflow.adapters.kafka import clients
from ticketflow.adapters.kafka.clients import (
    DeliveryError,
    ProduceReport,
    consume,
    decode_value,
    encode_event,
    iter_file_events,
    produce_events,
    produce_file,
    produce_raw,
)
from ticketflow.data.datasets import ColumnMapping
from ticketflow.devtools.sample import generate_tickets, write_tickets

pytestmark = pytest.mark.unit

Events = list[tuple[int, dict[str, Any] | None, str | None]]


def _events(path: Path, mapping: ColumnMapping | None = None, **kwargs: Any) -> Events:
    return list(iter_file_events(path, mapping or ColumnMapping(), **kwargs))


# --- iter_file_events: JSONL --------------------------------------------------------------


def test_jsonl_bad_lines_are_reported_by_line_number(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"ticket_id": "T-1", "body": "fine"}',  # 1
                "",  # 2: blank lines are ignored
                '{"ticket_id": "T-2", "body": "broken"',  # 3
                '["not", "an", "object"]',  # 4
                '{"body": "no id"}',  # 5
                '{"ticket_id": "  ", "body": "blank id"}',  # 6
                '{"ticket_id": 42, "body": "int id is fine"}',  # 7
                '{"ticket_id": "T-8", "score": Infinity}',  # 8: not valid JSON on the wire
                '{"ticket_id": "T-9", "tag_1": "a", "tag_2": "b", "answer": "leak"}',  # 9
                '{"ticket_id": ["T-10"], "body": "list id"}',  # 10
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    events = _events(path)
    assert [line for line, _, _ in events] == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    by_line = {line: (event, error) for line, event, error in events}
    assert by_line[1] == ({"ticket_id": "T-1", "body": "fine"}, None)
    assert by_line[3][0] is None and str(by_line[3][1]).startswith("invalid JSON: ")
    assert by_line[4] == (None, "expected a JSON object, got an array")
    assert by_line[5] == (None, "missing ticket_id")
    assert by_line[6] == (None, "missing ticket_id")
    assert by_line[7] == ({"ticket_id": "42", "body": "int id is fine"}, None)
    assert by_line[8][0] is None and str(by_line[8][1]).startswith("cannot serialize")
    assert by_line[9] == ({"ticket_id": "T-9", "tags": ["a", "b"]}, None)
    assert by_line[10] == (None, "ticket_id must be a string, got list")
    for _, event, error in events:
        assert (event is None) != (error is None)


def test_jsonl_ids_generated_only_when_the_mapping_has_none(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n', encoding="utf-8")
    events = _events(path, ColumnMapping.parse(["ticket_id=", "body=text"]))
    assert [(line, e) for line, e, _ in events] == [
        (1, {"body": "a", "ticket_id": "feed-1"}),
        (3, {"body": "b", "ticket_id": "feed-2"}),  # numbered by record, as load_labeled does
    ]


def test_jsonl_invalid_utf8_does_not_stop_the_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"ticket_id": "T-1", "body": "caf\xe9"}\n{"ticket_id": "T-2"}\n')
    events = _events(path)
    assert [line for line, event, _ in events if event is not None] == [1, 2]


def test_oversized_events_are_skipped_with_their_size(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"ticket_id": "big", "body": "x" * 500})
        + "\n"
        + json.dumps({"ticket_id": "small", "body": "x"})
        + "\n",
        encoding="utf-8",
    )
    events = _events(path, max_bytes=200)
    assert events[0][1] is None and "over the limit of 200" in str(events[0][2])
    assert events[1][2] is None


# --- iter_file_events: tables -------------------------------------------------------------


def test_csv_line_numbers_count_records_plus_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"ticket_id,subject,body,tag_1,tag_2\r\n"
        b'T-1,Hello,"multi\r\nline body",a,b\r\n'  # record 1 -> line 2
        b",No id,body,,\r\n"  # record 2 -> line 3 (although physically line 4)
        b"T-3,Hi,x,,c\r\n"  # record 3 -> line 4
    )
    events = _events(path)
    assert [(line, error) for line, _, error in events] == [
        (2, None),
        (3, "missing ticket_id"),
        (4, None),
    ]
    first = events[0][1]
    assert first is not None
    assert first["tags"] == ["a", "b"] and "tag_1" not in first
    assert first["body"].replace("\r\n", "\n") == "multi\nline body"
    assert events[2][1] is not None and events[2][1]["tags"] == ["c"]


def test_csv_without_id_column_gets_generated_ids(tmp_path: Path) -> None:
    path = tmp_path / "endava.csv"
    path.write_text("Document,Topic_group\nprinter broken,Hardware\n", encoding="utf-8")
    events = _events(path, ColumnMapping.parse(["body=Document"]))
    assert events == [
        (2, {"body": "printer broken", "Topic_group": "Hardware", "ticket_id": "endava-1"}, None)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_generated_files_produce_every_ticket(tmp_path: Path, suffix: str) -> None:
    rows = generate_tickets(25, seed=4)
    path = write_tickets(rows, tmp_path / f"sample{suffix}")
    events = _events(path)
    assert all(error is None for _, _, error in events)
    assert [e["ticket_id"] for _, e, _ in events if e] == [r["ticket_id"] for r in rows]
    first_line = 2 if suffix == ".csv" else 1
    assert events[0][0] == first_line


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown suffix"):
        _events(path)


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


def test_produce_file_sends_good_rows_and_reports_bad_ones(
    tmp_path: Path, fake_producer: type[FakeProducer]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"ticket_id": "T-1", "body": "a"}\nnope\n{"ticket_id": "T-3", "body": "c"}\n',
        encoding="utf-8",
    )
    base = {"bootstrap.servers": "broker:9092", "security.protocol": "SASL_SSL"}
    report = produce_file(base, "tickets", path, progress=False)
    assert report == ProduceReport(sent=2, skipped=[(2, report.skipped[0][1])])
    assert report.skipped[0][1].startswith("invalid JSON")
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
