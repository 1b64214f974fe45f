"""Read ticket tables (CSV, JSONL, JSON, Parquet) into validated tickets and their labels.

A ``ColumnMapping`` says which file columns hold the ticket's id, subject, body and tags, so
public data sets with their own column names (``Document`` in the Endava set, ``tag_1`` …
``tag_9`` in the Bueck set) load without rewriting the files.

Row numbers are 1-based positions among the file's records (the first data row is 1), the
same numbering in generated ids, skip reports and the producer.

A file that cannot be used at all (missing, empty, unreadable, a mapped column it lacks, no
text column) raises :class:`InputError` before any row is converted, naming the file and,
for columns, the columns it has: a wrong ``--map`` must not quietly train on half the text.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from ticketflow.data.errors import InputError
from ticketflow.data.progress import progress as progress_bar
from ticketflow.schemas import DEFAULT_LIMITS, FieldLimits, Ticket, fold_tag_columns

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ENCODING",
    "DEFAULT_MAPPING",
    "DROPPED_COLUMNS",
    "ColumnMapping",
    "InputError",
    "LabeledData",
    "check_columns",
    "clean_value",
    "decode_error",
    "load_labeled",
    "map_record",
    "read_table",
    "rows_to_dicts",
    "text_encoding",
]

# Columns never carried into a ticket: ``answer`` is the agent's reply in the Bueck data set,
# using it as input would leak the label into the features.
DROPPED_COLUMNS: frozenset[str] = frozenset({"answer"})

_TAG_SPLIT = re.compile(r"[,;|]")
_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".parquet")


@dataclass(frozen=True)
class ColumnMapping:
    """Which file column holds each ticket field (``None``: the file has no such column)."""

    ticket_id: str | None = "ticket_id"  # None or missing column: ids "<file stem>-<row>"
    subject: str | None = "subject"
    body: str | None = "body"
    tags: str | None = "tags"  # a list column, or a string split on , ; |
    tag_prefix: str = "tag_"  # tag_1 … tag_n columns folded into tags (Bueck form)

    @classmethod
    def parse(cls, pairs: Sequence[str]) -> ColumnMapping:
        """Build a mapping from CLI pairs like ``["body=Document", "ticket_id=id"]``.

        An empty value (``ticket_id=``) means the file has no such column.
        """
        known = [f.name for f in fields(cls)]
        values: dict[str, str | None] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise InputError(f"column mapping {pair!r} is not of the form FIELD=COLUMN")
            if key not in known:
                raise InputError(
                    f"unknown field {key!r} in column mapping {pair!r}; "
                    f"known fields: {', '.join(known)}"
                )
            if key in values:
                raise InputError(f"field {key!r} is mapped more than once")
            values[key] = value or None
        if "tag_prefix" in values and not values["tag_prefix"]:
            raise InputError("tag_prefix must not be empty")
        return cls(**values)  # type: ignore[arg-type]  # keys checked against fields() above

    def renames(self) -> dict[str, str]:
        """File column -> ticket field, for the fields whose column is named differently."""
        pairs = {
            "ticket_id": self.ticket_id,
            "subject": self.subject,
            "body": self.body,
            "tags": self.tags,
        }
        return {column: name for name, column in pairs.items() if column and column != name}

    def unmapped(self) -> set[str]:
        """The ticket fields mapped to no column: a file column of that name is ignored."""
        pairs = {
            "ticket_id": self.ticket_id,
            "subject": self.subject,
            "body": self.body,
            "tags": self.tags,
        }
        return {name for name, column in pairs.items() if column is None}


DEFAULT_ENCODING = "utf-8"
ENCODING_HINT = "pass --encoding (e.g. --encoding cp1252 for a spreadsheet export)"


def text_encoding(encoding: str) -> str:
    """The codec a text file is read with: UTF-8 tolerates a byte-order mark (spreadsheets
    write one), other names are taken as given."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> InputError:
    """One line for a file that is not ``encoding`` text: the first line that does not
    decode, the byte, and the option to change (not the byte offset in a parser's buffer)."""
    byte = bytes(exc.object[exc.start : exc.start + 1]).hex()
    line = _undecodable_line(path, encoding)
    where = f"{path}:{line}" if line is not None else str(path)
    return InputError(f"{where}: not {encoding} text (byte 0x{byte}); {ENCODING_HINT}")


def _undecodable_line(path: Path, encoding: str) -> int | None:
    # An incremental decoder: a multi-byte character may span what the split calls lines.
    decoder = codecs.getincrementaldecoder(text_encoding(encoding))()
    try:
        with path.open("rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                try:
                    decoder.decode(raw)
                except UnicodeDecodeError:
                    return line_no
    except OSError:
        return None
    return None


def read_table(path: Path, *, encoding: str = DEFAULT_ENCODING) -> pd.DataFrame:
    """Read a ticket table; every cell keeps its Python value (strings stay strings).

    ``.csv`` goes through the real CSV parser (quoted fields with newlines, CRLF, a BOM) with
    every column read as text and only empty cells missing; ``.jsonl``/``.ndjson`` hold one
    JSON object per line, ``.json`` a list of objects, ``.parquet`` a table. A file that is
    missing, empty (no header, no records) or unreadable raises :class:`InputError`, and so
    does text that is not ``encoding`` (CSV and JSON; Parquet stores its own), naming the
    line.
    """
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(
            f"cannot read {path}: unknown suffix {path.suffix!r}; use one of {', '.join(_SUFFIXES)}"
        )
    if not path.exists():
        raise InputError(f"cannot read {path}: no such file")
    if not path.is_file():
        raise InputError(f"cannot read {path}: not a file")
    try:
        frame = _read(path, suffix, text_encoding(encoding))
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise decode_error(path, encoding, exc) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"cannot read {path}: the file is empty (no header row)") from exc
    except (ValueError, OSError, UnicodeError) as exc:  # parser, JSON, Arrow and I/O errors
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot read {path}: {reason}") from exc
    if not len(frame.columns):
        raise InputError(f"cannot read {path}: the file holds no records")
    return frame


def _read(path: Path, suffix: str, encoding: str) -> pd.DataFrame:
    if suffix == ".csv":
        # dtype=str keeps ids like "000123" and stops "NA" or "None" from turning into NaN.
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=encoding,
        )
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".json":
        with path.open(encoding=encoding) as fh:
            data = json.load(fh)
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise InputError(f"{path}: a .json file must hold a list of objects")
        return _frame(data)
    records: list[dict[str, Any]] = []
    with path.open(encoding=encoding) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{line_no}: invalid JSON: {exc}") from exc
            if not isinstance(item, dict):
                raise InputError(f"{path}:{line_no}: expected a JSON object, got {_kind(item)}")
            records.append(item)
    return _frame(records)


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    # dtype=object: without it pandas turns integer ids with gaps into floats (7 -> 7.0).
    return pd.DataFrame(records, dtype=object)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def clean_value(value: Any) -> Any:
    """Turn pandas/numpy cell values into plain Python ones (NaN, NaT, NA -> None)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, np.ndarray):  # list columns read from Parquet
        return [clean_value(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {k: clean_value(v) for k, v in value.items()}
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return clean_value(value.item())
    return value


def _split_tags(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            # A list written as JSON text, e.g. by a tool that stringified a list column.
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return [tag for tag in parsed if tag is not None]
        return [tag.strip() for tag in _TAG_SPLIT.split(text) if tag.strip()]
    if isinstance(value, list):
        return [tag for tag in value if tag is not None]
    return value


def map_record(
    record: dict[str, Any],
    mapping: ColumnMapping,
    *,
    generated_id: str | None = None,
    drop_columns: Collection[str] = DROPPED_COLUMNS,
) -> dict[str, Any]:
    """Rename one raw record's columns to ticket field names.

    Values are cleaned (NaN -> None), a string tags column is split on , ; |, numbered tag
    columns are folded into ``tags``, an integer id becomes a string and other columns are
    kept. ``generated_id`` is used when the mapping has no id column or the record lacks it.
    """
    renames = mapping.renames()
    # A column named like a field that is mapped elsewhere (a stray "body" next to
    # body=Document) or mapped to None would clash with, or sneak past, the mapping.
    shadowed = set(renames.values()) | mapping.unmapped()
    out: dict[str, Any] = {}
    for column, value in record.items():
        if column in drop_columns or (column in shadowed and column not in renames):
            continue
        out[renames.get(column, column)] = clean_value(value)
    if "tags" in out:
        tags = _split_tags(out["tags"])
        if tags is None:
            del out["tags"]
        else:
            out["tags"] = tags
    if mapping.tag_prefix != "tag_":
        prefix = re.compile(rf"^{re.escape(mapping.tag_prefix)}(\d+)$")
        out = {
            (f"tag_{m.group(1)}" if (m := prefix.match(key)) else key): value
            for key, value in out.items()
        }
    out = fold_tag_columns(out)
    ticket_id = out.get("ticket_id")
    if isinstance(ticket_id, int) and not isinstance(ticket_id, bool):
        out["ticket_id"] = str(ticket_id)
    if generated_id is not None and "ticket_id" not in out:
        out["ticket_id"] = generated_id
    return out


def check_columns(
    columns: Collection[object], mapping: ColumnMapping, *, source: Path | str = "the table"
) -> None:
    """Raise :class:`InputError` unless ``columns`` hold every column ``mapping`` renames
    (``body=Document`` needs ``Document``) and a text column (subject or body).

    Columns mapped under their own field name (the defaults) may be missing: a file without
    ``tags`` or ``ticket_id`` is fine, the ids are then generated.
    """
    present = [str(column) for column in columns]
    listed = ", ".join(present) if present else "none"
    missing = [
        f"{column!r} (mapped to {name})"
        for column, name in mapping.renames().items()
        if column not in present
    ]
    if missing:
        raise InputError(f"{source}: no column {', '.join(missing)}; the columns are: {listed}")
    texts = {"subject": mapping.subject, "body": mapping.body}
    if not any(column in present for column in texts.values() if column):
        wanted = " or ".join(f"{column!r}" for column in texts.values() if column)
        raise InputError(
            f"{source}: no text column ({wanted or 'subject and body are unmapped'}); "
            f"map one, e.g. body=COLUMN; the columns are: {listed}"
        )


def rows_to_dicts(
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    *,
    id_prefix: str | None = None,
    drop_columns: Collection[str] = DROPPED_COLUMNS,
    source: Path | str = "the table",
) -> list[dict[str, Any]]:
    """Convert a table to ticket dicts (see ``map_record``), one per row, in order.

    With ``id_prefix``, rows get the id ``f"{id_prefix}-{row_number}"`` when the mapping has
    no id column or the table lacks it (``load_labeled`` passes the file stem). The columns
    are checked first (:func:`check_columns`; ``source`` names the table in its errors).
    """
    check_columns(frame.columns, mapping, source=source)
    generate = id_prefix is not None and (
        mapping.ticket_id is None or mapping.ticket_id not in frame.columns
    )
    records = frame.to_dict(orient="records")
    return [
        map_record(
            {str(k): v for k, v in record.items()},
            mapping,
            generated_id=f"{id_prefix}-{row_number}" if generate else None,
            drop_columns=drop_columns,
        )
        for row_number, record in enumerate(records, start=1)
    ]


DEFAULT_MAPPING = ColumnMapping()


@dataclass
class LabeledData:
    """Validated tickets with one label list per target, and the rows left out."""

    tickets: list[Ticket]
    labels: dict[str, list[str]]  # target -> label per ticket (same order as tickets)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    # load_labeled(partial=True): per target, the tickets (indices) without its label; their
    # entry in ``labels`` is MISSING_LABEL. Empty: every ticket has every label.
    unlabeled: dict[str, list[int]] = field(default_factory=dict)

    def labelled_rows(self, target: str) -> list[int]:
        """The tickets (indices) that have a label of ``target``."""
        missing = set(self.unlabeled.get(target, ()))
        return [i for i in range(len(self.tickets)) if i not in missing]


def invalid_row_reason(exc: ValidationError, *, most: int | None = None) -> str:
    """Why a row is not a valid ticket, in one line (its first ``most`` errors; all by
    default)."""
    parts = []
    for error in exc.errors(include_url=False)[:most]:
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{location}: {error['msg']}" if location else error["msg"])
    return "invalid ticket: " + "; ".join(parts)


# The label of a ticket that has none for the target (LabeledData.unlabeled says which).
MISSING_LABEL = ""


def clean_label(value: Any) -> str | None:
    """A label cell as a label: stripped text, None for an empty or missing cell."""
    value = clean_value(value)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def load_labeled(
    path: Path,
    *,
    targets: Sequence[str],
    mapping: ColumnMapping = DEFAULT_MAPPING,
    limits: FieldLimits = DEFAULT_LIMITS,
    limit: int | None = None,
    progress: bool = True,
    encoding: str = DEFAULT_ENCODING,
    partial: bool = False,
) -> LabeledData:
    """Load a labelled table: tickets validated with ``limits`` and a label per target.

    ``targets`` are column names in the file (``queue``, ``Topic_group`` …). Rows with an
    empty target value or that fail validation are skipped and reported with their row
    number. ``limit`` reads only the first ``limit`` rows of the file. ``partial``: keep a
    row with some of its targets' labels (only a row with none is skipped); the missing ones
    are in ``unlabeled`` (training learns each target from the rows that have it).
    """
    if not targets:
        raise InputError("at least one target column is needed")
    frame = read_table(path, encoding=encoding)
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(map(repr, missing))}; "
            f"columns are {', '.join(map(str, frame.columns))}"
        )
    if limit is not None:
        frame = frame.head(limit)
    target_values = {t: frame[t].tolist() for t in targets}
    rows = rows_to_dicts(frame, mapping, id_prefix=path.stem, source=path)
    data = LabeledData(tickets=[], labels={t: [] for t in targets}, skipped=[])
    context = {"limits": limits}
    iterator = progress_bar(
        enumerate(rows), total=len(rows), desc=f"loading {path.name}", disable=not progress
    )
    for index, row in iterator:
        row_number = index + 1
        raw_labels = {t: clean_label(target_values[t][index]) for t in targets}
        labels = {t: label for t, label in raw_labels.items() if label is not None}
        empty = [t for t in targets if t not in labels]
        if empty and (not partial or not labels):
            data.skipped.append((row_number, f"empty {', '.join(empty)}"))
            continue
        try:
            ticket = Ticket.model_validate(row, context=context)
        except ValidationError as exc:
            data.skipped.append((row_number, invalid_row_reason(exc)))
            continue
        for target in empty:
            data.unlabeled.setdefault(target, []).append(len(data.tickets))
        data.tickets.append(ticket)
        for target in targets:
            data.labels[target].append(labels.get(target, MISSING_LABEL))
    if not data.tickets:
        first = f" (first: row {data.skipped[0][0]}, {data.skipped[0][1]})" if data.skipped else ""
        raise InputError(f"{path}: no usable rows: {len(rows)} read, all skipped{first}")
    if data.skipped:
        logger.warning(
            "%s: skipped %d of %d rows (first: row %d, %s)",
            path,
            len(data.skipped),
            len(rows),
            *data.skipped[0],
        )
    logger.info("%s: loaded %d tickets, targets %s", path, len(data.tickets), list(targets))
    return data
