"""A ticket file's rows as events: what ``ticketflow produce`` sends and ``backfill`` imports.

The reader checks little on purpose: the worker validates every event and dead-letters the
bad ones. It only refuses what cannot be sent at all (unparsable lines, rows without a
``ticket_id`` for the key, values that do not serialize, events over the size limit) and
reports them by line number so the user can fix their file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketflow.data.datasets import (
    DEFAULT_ENCODING,
    DEFAULT_MAPPING,
    ColumnMapping,
    map_record,
    read_table,
    rows_to_dicts,
    text_encoding,
)
from ticketflow.data.wire import encode_event

logger = logging.getLogger(__name__)

__all__ = ["FileEvent", "FileEvents", "encode_event", "iter_file_events"]

# (line number in the file, 1-based; for CSV the record number + header offset), event, error
FileEvent = tuple[int, dict[str, Any] | None, str | None]

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
# A CSV's first line is its header, so data record n sits on spreadsheet row n + 1.
_CSV_HEADER_LINES = 1
# Skipped rows logged one by one; past this only the total is, so a broken file does not
# flood the terminal.
_LOGGED_SKIPS = 10


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
    encoding: str = DEFAULT_ENCODING,
) -> Iterator[FileEvent]:
    """Yield ``(line_no, event, error)`` for each record of a ticket file.

    JSONL (``.jsonl``/``.ndjson``) is parsed line by line so one broken line does not stop
    the file; blank lines are ignored. Other formats go through ``read_table``; their number
    is the record number, plus the header line for CSV. Exactly one of ``event`` and
    ``error`` is set. Ids are generated as ``<stem>-<record>`` only when the mapping has no
    id column (or, for tables, when the file lacks it), as ``load_labeled`` does.
    """
    if path.suffix.lower() in _JSONL_SUFFIXES:
        yield from _iter_jsonl(path, mapping, max_bytes, encoding)
        return
    frame = read_table(path, encoding=encoding)
    offset = _CSV_HEADER_LINES if path.suffix.lower() == ".csv" else 0
    for record_no, event in enumerate(
        rows_to_dicts(frame, mapping, id_prefix=path.stem, source=path), 1
    ):
        error = _check_event(event, max_bytes)
        yield record_no + offset, (None if error else event), error


def _iter_jsonl(
    path: Path, mapping: ColumnMapping, max_bytes: int | None, encoding: str
) -> Iterator[FileEvent]:
    record_no = 0
    # errors="replace": a stray byte costs one character, not the line (the worker checks).
    with path.open(encoding=text_encoding(encoding), errors="replace") as fh:
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


@dataclass
class FileEvents:
    """The sendable events of a ticket file, for a producer to iterate once.

    Rows that cannot be sent are left out and collected in ``skipped`` as ``(line, reason)``;
    the first few are logged as warnings while iterating, :meth:`log_total` logs the count.
    Not ``Sized``: the file is read as it is sent, not ahead.
    """

    path: Path
    mapping: ColumnMapping = DEFAULT_MAPPING
    max_bytes: int | None = None
    encoding: str = DEFAULT_ENCODING
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line_no, event, error in iter_file_events(
            self.path, self.mapping, max_bytes=self.max_bytes, encoding=self.encoding
        ):
            if event is None:
                self.skipped.append((line_no, error or "unknown error"))
                if len(self.skipped) <= _LOGGED_SKIPS:
                    logger.warning("%s:%d: skipped: %s", self.path, line_no, error)
                continue
            yield event

    def log_total(self) -> None:
        """Log how many rows were skipped when more were than were logged one by one."""
        if len(self.skipped) > _LOGGED_SKIPS:
            logger.warning("%s: skipped %d records in all", self.path, len(self.skipped))
