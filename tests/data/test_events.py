"""A ticket file's rows as events: line numbers, generated ids, the rows that cannot be sent."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from ticketflow.data.datasets import ColumnMapping
from ticketflow.data.events import FileEvent, FileEvents, iter_file_events
from ticketflow.devtools.sample import generate_tickets, write_tickets

pytestmark = pytest.mark.unit

Events = list[FileEvent]


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


# --- FileEvents: what a producer iterates -------------------------------------------------


def test_file_events_yield_the_good_rows_and_collect_the_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "in.jsonl"
    lines = ['{"ticket_id": "T-1", "body": "a"}'] + ["nope"] * 12
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    events = FileEvents(path)
    with caplog.at_level(logging.WARNING, logger="ticketflow.data.events"):
        assert list(events) == [{"ticket_id": "T-1", "body": "a"}]
        events.log_total()
    assert [line for line, _ in events.skipped] == list(range(2, 14))
    assert all(reason.startswith("invalid JSON") for _, reason in events.skipped)
    messages = [record.getMessage() for record in caplog.records]
    # The first ten one by one, then only the count.
    assert sum(": skipped: invalid JSON" in m for m in messages) == 10
    assert messages[-1] == f"{path}: skipped 12 records in all"


def test_file_events_check_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"ticket_id": "big", "body": "x" * 500}) + "\n", encoding="utf-8")
    events = FileEvents(path, max_bytes=200)
    assert list(events) == []
    assert events.skipped[0][0] == 1 and "over the limit of 200" in events.skipped[0][1]
