"""Ticket files in another encoding than UTF-8 (spreadsheet exports in cp1252): read with
``encoding``; without it, one line naming the line that does not decode and ``--encoding``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ticketflow.batch.backfill import BackfillError
from ticketflow.data.datasets import InputError, load_labeled, read_table
from ticketflow.data.events import iter_file_events

pytestmark = pytest.mark.unit

ACCENTED = "Facture réglée deux fois: café crème pour Müller — 5 €"


def cp1252_csv(path: Path) -> Path:
    path.write_bytes(
        f"ticket_id,subject,body,queue\nT-1,hello,plain text,Billing\nT-2,{ACCENTED},x,IT\n".encode(
            "cp1252"
        )
    )
    return path


def cp1252_jsonl(path: Path) -> Path:
    rows = [
        {"ticket_id": "T-1", "body": "plain", "queue": "A"},
        {"ticket_id": "T-2", "body": ACCENTED, "queue": "B"},
    ]
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.write_bytes(text.encode("cp1252"))
    return path


@pytest.mark.parametrize("make", [cp1252_csv, cp1252_jsonl], ids=["csv", "jsonl"])
def test_a_cp1252_file_reads_with_its_encoding(make: object, tmp_path: Path) -> None:
    path = make(tmp_path / ("t.csv" if make is cp1252_csv else "t.jsonl"))  # type: ignore[operator]
    frame = read_table(path, encoding="cp1252")
    assert ACCENTED in frame.astype(str).to_numpy().ravel().tolist()
    data = load_labeled(path, targets=["queue"], encoding="cp1252", progress=False)
    assert len(data.tickets) == 2


@pytest.mark.parametrize("make", [cp1252_csv, cp1252_jsonl], ids=["csv", "jsonl"])
def test_without_it_one_line_names_the_line_and_the_option(make: object, tmp_path: Path) -> None:
    path = make(tmp_path / ("t.csv" if make is cp1252_csv else "t.jsonl"))  # type: ignore[operator]
    line = 3 if path.suffix == ".csv" else 2
    with pytest.raises(InputError) as caught:
        read_table(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: not utf-8 text (byte 0x")
    assert "--encoding" in message and "\n" not in message


def test_utf8_with_a_byte_order_mark_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfticket_id,body\nT-1," + "café".encode())
    assert list(read_table(path).columns) == ["ticket_id", "body"]


def test_produce_and_backfill_read_the_encoding_too(tmp_path: Path) -> None:
    path = cp1252_csv(tmp_path / "t.csv")
    events = [event for _, event, _ in iter_file_events(path, encoding="cp1252")]
    assert events[1] is not None and events[1]["subject"] == ACCENTED
    # A file backfill cannot read is bad input (exit 2), as for every command.
    assert issubclass(BackfillError, InputError)
