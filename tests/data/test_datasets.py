"""Reading ticket tables: formats, column mappings, tag folding, labels and skipped rows."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ticketflow.data.datasets import (
    DROPPED_COLUMNS,
    ColumnMapping,
    load_labeled,
    map_record,
    read_table,
    rows_to_dicts,
)
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.schemas import FieldLimits

# tests/models/test_datasets.py -> parents[2] is the checkout; the data sit beside it.
SHARED_DATASETS = (Path(__file__).parents[2] / ".." / "shared" / "datasets").resolve()


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- ColumnMapping.parse -------------------------------------------------------------------


@pytest.mark.unit
def test_parse_maps_fields_and_keeps_defaults() -> None:
    mapping = ColumnMapping.parse(["body=Document", " ticket_id = id "])
    assert mapping == ColumnMapping(ticket_id="id", body="Document")
    assert ColumnMapping.parse([]) == ColumnMapping()


@pytest.mark.unit
def test_parse_empty_value_means_no_column() -> None:
    assert ColumnMapping.parse(["ticket_id="]).ticket_id is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["text=Document"], r"unknown field 'text'.*known fields: ticket_id, subject"),
        (["body"], "not of the form FIELD=COLUMN"),
        (["=x"], "not of the form FIELD=COLUMN"),
        (["body=a", "body=b"], "mapped more than once"),
        (["tag_prefix="], "tag_prefix must not be empty"),
    ],
)
def test_parse_rejects_bad_pairs(pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ColumnMapping.parse(pairs)


# --- read_table --------------------------------------------------------------------------


@pytest.mark.unit
def test_read_csv_with_crlf_quoted_newlines_and_bom(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfticket_id,subject,body,queue\r\n"
        b'007,"Hi, there","line one\r\nline two, with comma",Billing\r\n'
        b"008,,NA,IT\r\n"
    )
    frame = read_table(_write_bytes(tmp_path / "t.csv", data))
    assert list(frame.columns) == ["ticket_id", "subject", "body", "queue"]
    rows = rows_to_dicts(frame, ColumnMapping())
    assert rows[0]["ticket_id"] == "007"  # text stays text: no int, no lost zeros
    assert rows[0]["subject"] == "Hi, there"
    assert "line one" in rows[0]["body"] and "line two, with comma" in rows[0]["body"]
    assert rows[1]["subject"] is None  # empty cell
    assert rows[1]["body"] == "NA"  # "NA" is text, not a missing value


@pytest.mark.unit
def test_read_jsonl_and_json_keep_python_values(tmp_path: Path) -> None:
    records = [{"ticket_id": 7, "body": "a", "n": 1}, {"ticket_id": "x", "body": "b"}]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    as_json = tmp_path / "t.json"
    as_json.write_text(json.dumps(records), encoding="utf-8")
    for path in (jsonl, as_json, tmp_path / "t.ndjson"):
        if path.suffix == ".ndjson":
            path.write_text(jsonl.read_text(encoding="utf-8"), encoding="utf-8")
        rows = rows_to_dicts(read_table(path), ColumnMapping())
        assert rows[0]["n"] == 1 and rows[1]["n"] is None
        assert rows[0]["ticket_id"] == "7"  # an integer id becomes a string


@pytest.mark.unit
def test_read_jsonl_reports_the_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"ticket_id": "a", "body": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: invalid JSON"):
        read_table(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:1: expected a JSON object"):
        read_table(path)


@pytest.mark.unit
def test_read_json_must_be_a_list_of_objects(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"ticket_id": "a"}', encoding="utf-8")
    with pytest.raises(ValueError, match="list of objects"):
        read_table(path)


@pytest.mark.unit
def test_read_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown suffix '\.xlsx'"):
        read_table(tmp_path / "t.xlsx")


@pytest.mark.unit
def test_read_parquet_list_column_becomes_a_list(tmp_path: Path) -> None:
    path = write_tickets(generate_tickets(3), tmp_path / "t.parquet")
    rows = rows_to_dicts(read_table(path), ColumnMapping())
    assert all(type(row["tags"]) is list for row in rows)
    assert all(all(type(tag) is str for tag in row["tags"]) for row in rows)


# --- rows_to_dicts / map_record ----------------------------------------------------------


@pytest.mark.unit
def test_numbered_tag_columns_fold_into_tags_in_order(tmp_path: Path) -> None:
    path = tmp_path / "bueck.csv"
    path.write_text(
        "subject,body,answer,queue,tag_2,tag_1,tag_10\n"
        "s,b,the agent reply,Billing,second,first,tenth\n"
        ",only body,reply,IT,,lonely,\n",
        encoding="utf-8",
    )
    rows = rows_to_dicts(read_table(path), ColumnMapping(), id_prefix=path.stem)
    assert rows[0]["tags"] == ["first", "second", "tenth"]
    assert rows[1]["tags"] == ["lonely"]
    assert all("answer" not in row for row in rows)  # the agent's reply never becomes input
    assert not any(key.startswith("tag_") for row in rows for key in row)
    assert [row["ticket_id"] for row in rows] == ["bueck-1", "bueck-2"]
    assert "answer" in DROPPED_COLUMNS


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Billing, Refund", ["Billing", "Refund"]),
        ("a;b|c", ["a", "b", "c"]),
        (' ["x", "y, z"] ', ["x", "y, z"]),
        ("", []),
        (None, None),
        (["p", None, "q"], ["p", "q"]),
    ],
)
def test_tags_string_is_split(value: Any, expected: list[str] | None) -> None:
    row = map_record({"ticket_id": "t", "tags": value}, ColumnMapping())
    assert row.get("tags") == expected


@pytest.mark.unit
def test_mapping_renames_columns_and_keeps_the_rest() -> None:
    mapping = ColumnMapping.parse(
        ["body=Document", "ticket_id=id", "tags=Labels", "tag_prefix=Tag", "subject="]
    )
    record = {
        "id": 5,
        "Document": "text",
        "body": "a stray column that must not win",
        "subject": "ignored: subject is mapped to no column",
        "Labels": "a|b",
        "Tag1": "c",
        "Topic_group": "Hardware",
        "score": float("nan"),
    }
    row = map_record(record, mapping)
    assert row == {
        "ticket_id": "5",
        "body": "text",
        "tags": ["a", "b", "c"],
        "Topic_group": "Hardware",
        "score": None,
    }


@pytest.mark.unit
def test_ids_are_generated_when_the_column_is_missing_or_unmapped(tmp_path: Path) -> None:
    path = tmp_path / "endava.csv"
    path.write_text("Document,Topic_group,ticket_id\nx,Hardware,real-1\ny,Access,real-2\n")
    frame = read_table(path)
    mapping = ColumnMapping.parse(["body=Document", "ticket_id="])
    assert [r["ticket_id"] for r in rows_to_dicts(frame, mapping, id_prefix="endava")] == [
        "endava-1",
        "endava-2",
    ]
    with_ids = rows_to_dicts(frame, ColumnMapping.parse(["body=Document"]), id_prefix="endava")
    assert [r["ticket_id"] for r in with_ids] == ["real-1", "real-2"]
    no_column = frame.drop(columns=["ticket_id"])
    generated = rows_to_dicts(no_column, ColumnMapping.parse(["body=Document"]), id_prefix="e")
    assert [r["ticket_id"] for r in generated] == ["e-1", "e-2"]


# --- load_labeled ------------------------------------------------------------------------


@pytest.mark.unit
def test_load_labeled_skips_rows_with_empty_labels_or_invalid_tickets(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"ticket_id": "a", "subject": "s", "body": "ok", "queue": "Billing", "type": "Request"},
        {"ticket_id": "b", "subject": "s", "body": "no queue", "queue": "", "type": "Request"},
        {"ticket_id": "c", "subject": None, "body": None, "queue": "IT", "type": "Incident"},
        {"ticket_id": "d", "subject": "s", "body": "x" * 50, "queue": "IT", "type": "Problem"},
        {"ticket_id": "", "subject": "s", "body": "no id", "queue": "IT", "type": "Problem"},
        {"ticket_id": "f", "subject": "s", "body": "fine", "queue": " IT ", "type": None},
        {"ticket_id": "g", "subject": "s", "body": "fine too", "queue": "IT", "type": "Change"},
    ]
    path = write_tickets(rows, tmp_path / "t.jsonl")
    data = load_labeled(
        path, targets=["queue", "type"], limits=FieldLimits(max_body_chars=20), progress=False
    )
    assert [t.ticket_id for t in data.tickets] == ["a", "g"]
    assert data.labels == {"queue": ["Billing", "IT"], "type": ["Request", "Change"]}
    reasons = dict(data.skipped)
    assert list(reasons) == [2, 3, 4, 5, 6]
    assert reasons[2] == "empty queue"
    assert "subject and body are both empty" in reasons[3]
    assert "body" in reasons[4] and "limit is 20" in reasons[4]
    assert "ticket_id" in reasons[5]
    assert reasons[6] == "empty type"


@pytest.mark.unit
def test_load_labeled_limit_reads_the_first_rows(tmp_path: Path) -> None:
    path = write_tickets(generate_tickets(30), tmp_path / "t.csv")
    data = load_labeled(path, targets=["queue"], limit=10, progress=False)
    assert [t.ticket_id for t in data.tickets] == [f"T-{i:06d}" for i in range(1, 11)]


@pytest.mark.unit
def test_load_labeled_missing_target_column_is_a_clear_error(tmp_path: Path) -> None:
    path = write_tickets(generate_tickets(3), tmp_path / "t.csv")
    with pytest.raises(ValueError, match="no column 'Topic_group'; columns are ticket_id"):
        load_labeled(path, targets=["Topic_group"], progress=False)
    with pytest.raises(ValueError, match="at least one target"):
        load_labeled(path, targets=[], progress=False)


@pytest.mark.unit
def test_loaded_tickets_keep_extra_columns_and_tags(tmp_path: Path) -> None:
    rows = generate_tickets(5, seed=11)
    for row in rows:
        row["business_type"] = "IT Services"
    path = write_tickets(rows, tmp_path / "t.csv")
    data = load_labeled(path, targets=["queue"], progress=False)
    ticket = data.tickets[0]
    assert ticket.extra_fields == {"business_type": "IT Services"}
    assert ticket.tags == rows[0]["tags"]
    assert ticket.created_at is not None and ticket.created_at.tzinfo is not None


# --- the real data sets (optional) ------------------------------------------------------


def _require_shared(name: str) -> Path:
    path = SHARED_DATASETS / name / "tickets.csv"
    if not path.exists():
        pytest.skip(f"public data set not found at {path} (only present on the project machines)")
    return path


@pytest.mark.slow
def test_bueck_loads_without_the_answer_column() -> None:
    path = _require_shared("bueck-v3")
    start = time.perf_counter()
    data = load_labeled(path, targets=["queue", "type", "priority"], progress=False)
    elapsed = time.perf_counter() - start
    assert len(data.tickets) == 4000, data.skipped[:5]
    assert len(set(data.labels["queue"])) == 10
    assert all("answer" not in t.extra_fields for t in data.tickets)
    assert sum(t.subject is None for t in data.tickets) > 400
    assert max(len(t.tags) for t in data.tickets) >= 8
    assert elapsed < 30


@pytest.mark.slow
def test_endava_loads_with_a_column_mapping() -> None:
    path = _require_shared("endava-it")
    data = load_labeled(
        path,
        targets=["Topic_group"],
        mapping=ColumnMapping.parse(["body=Document"]),
        progress=False,
    )
    assert len(data.tickets) + len(data.skipped) == 38331
    assert len(data.tickets) > 38000
    assert len(set(data.labels["Topic_group"])) == 8
    assert data.tickets[0].ticket_id == "tickets-1"
