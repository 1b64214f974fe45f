"""Ticket files that cannot be used fail at once, in one line naming the file or column."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketflow.data.datasets import (
    ColumnMapping,
    InputError,
    check_columns,
    load_labeled,
    read_table,
)
from ticketflow.devtools.sample import generate_tickets, write_tickets

pytestmark = pytest.mark.unit


def one_line(exc: pytest.ExceptionInfo[InputError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_an_empty_csv_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_table(path)
    assert str(path) in one_line(caught) and "empty" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.csv", None, "no such file"),
        ("empty.jsonl", "\n\n", "no records"),
        ("broken.json", "{not json", "cannot read"),
        ("broken.parquet", "not parquet", "cannot read"),
    ],
)
def test_unreadable_files_name_the_file(
    tmp_path: Path, name: str, content: str | None, reason: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_table(path)
    assert str(path) in one_line(caught) and reason in str(caught.value)


def test_a_mapped_column_that_is_missing_lists_the_columns(tmp_path: Path) -> None:
    path = write_tickets(generate_tickets(5), tmp_path / "t.csv")
    mapping = ColumnMapping.parse(["body=NoSuchColumn"])
    with pytest.raises(InputError) as caught:
        load_labeled(path, targets=["queue"], mapping=mapping, progress=False)
    message = one_line(caught)
    assert str(path) in message
    assert "'NoSuchColumn' (mapped to body)" in message
    assert "the columns are: ticket_id, subject, body" in message


def test_a_file_without_a_text_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("ticket_id,queue\nT-1,Billing\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_labeled(path, targets=["queue"], progress=False)
    message = one_line(caught)
    assert "no text column" in message and "the columns are: ticket_id, queue" in message


def test_default_columns_may_be_missing() -> None:
    # No ticket_id (generated), no tags, no subject: a body is enough.
    check_columns(["body", "queue"], ColumnMapping())
    check_columns(["Document"], ColumnMapping.parse(["body=Document", "subject="]))


def test_a_file_whose_rows_are_all_skipped_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("subject,body,queue\nhello,world,\n,,Billing\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"no usable rows: 2 read, all skipped \(first: row 1"):
        load_labeled(path, targets=["queue"], progress=False)


def test_bad_mappings_and_targets_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        ColumnMapping.parse(["text=Document"])
    path = write_tickets(generate_tickets(3), tmp_path / "t.csv")
    with pytest.raises(InputError, match="no column 'Topic_group'"):
        load_labeled(path, targets=["Topic_group"], progress=False)
