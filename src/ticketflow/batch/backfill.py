"""``ticketflow backfill``: historical tickets into the vector store, as the worker stores them.

Each valid row of a ticket file (CSV, JSONL, Parquet: the readers ``ticketflow produce`` uses,
so the ids and line numbers are the same) goes through the served model's labelling pipeline
and is upserted by ticket id with the worker's record layout (:mod:`ticketflow.schemas.store`):
the vectors of the serving vector space, the model's predictions, and the file's own labels as
``imported_<target>`` (``label_source = imported``), which retraining treats as human labels.
A person's correction already in the store is never overwritten.

Re-running is safe: a record already written by the same model version with the same imported
labels is skipped before anything is embedded, so a run that crashed resumes where it stopped
and a finished one writes nothing again; upserts by id never duplicate a ticket.

A batch is written to the store on a thread of its own while the next one is labelled, as the
worker does (the store's upsert was ~10% of a run on 2 cores: bench/similar.py); at most one
write is in flight, and a write that fails stops the run with its error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from ticketflow.adapters.store import ChromaVectorStore, StoredRecord
from ticketflow.data.datasets import (
    DEFAULT_ENCODING,
    DEFAULT_MAPPING,
    ColumnMapping,
    clean_label,
    invalid_row_reason,
)
from ticketflow.data.errors import InputError

# The producer's reader: the same ids and line numbers as `ticketflow produce` reports.
from ticketflow.data.events import iter_file_events
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.models.redaction import stored_documents
from ticketflow.models.review import DEFAULT_POLICY, ReviewPolicy
from ticketflow.schemas import (
    DEFAULT_LIMITS,
    FieldLimits,
    SourcePosition,
    Ticket,
)
from ticketflow.schemas import store as layout

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 256


class BackfillError(InputError):
    """The file cannot be backfilled at all (unreadable, wrong targets...): bad input, so
    ``ticketflow backfill`` exits 2 as every command does for a bad file."""


@dataclass
class BackfillReport:
    path: Path
    model_version: str
    rows: int = 0  # records in the file
    written: int = 0  # upserted: new, or changed model version or labels
    unchanged: int = 0  # already stored by this model version with the same labels
    duplicates: int = 0  # a later row of the file had the same ticket id (the last one wins)
    with_labels: int = 0  # written with at least one imported label
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def tickets_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.path.name}: {self.rows} rows; wrote {self.written} "
            f"({self.with_labels} with imported labels), {self.unchanged} already stored by "
            f"{self.model_version}, {self.duplicates} duplicate ids, {len(self.bad)} bad rows; "
            f"{self.seconds:.1f}s, {self.tickets_per_s:.1f} tickets/s written"
        )


@dataclass(frozen=True)
class BackfillRequest:
    """What to backfill and how: the file, how its rows are read, and how they are stored.

    ``targets``: the file's label columns to import (default: the model's targets).
    ``document``: the worker's ``CHROMA_DOCUMENT`` policy (redacted, full, none).
    ``force``: write rows already stored by this model version too.
    """

    path: Path
    targets: Sequence[str] | None = None
    mapping: ColumnMapping = DEFAULT_MAPPING
    limits: FieldLimits = DEFAULT_LIMITS
    batch_size: int = DEFAULT_BATCH
    document: str = "redacted"  # the CHROMA_DOCUMENT default: retrain learns from it
    force: bool = False
    encoding: str = DEFAULT_ENCODING


@dataclass(frozen=True)
class Row:
    line: int
    ticket: Ticket
    labels: dict[str, str]


def read_rows(
    path: Path,
    *,
    targets: Sequence[str],
    mapping: ColumnMapping = DEFAULT_MAPPING,
    limits: FieldLimits = DEFAULT_LIMITS,
    encoding: str = DEFAULT_ENCODING,
) -> tuple[list[Row], list[tuple[int, str]]]:
    """The file's valid tickets with their labels, and the bad rows as ``(line, reason)``.

    Ids are the file's, else ``<stem>-<record>`` as ``ticketflow produce`` makes them."""
    rows: list[Row] = []
    bad: list[tuple[int, str]] = []
    context = {"limits": limits}
    try:
        events = list(iter_file_events(path, mapping, encoding=encoding))
    except (OSError, ValueError) as exc:
        # The readers' InputError names the file (and the line) already.
        reason = str(exc) if isinstance(exc, InputError) else f"cannot read {path}: {exc}"
        raise BackfillError(reason) from exc
    for line, event, error in events:
        if event is None:
            bad.append((line, error or "unreadable row"))
            continue
        try:
            ticket = Ticket.model_validate(event, context=context)
        except ValidationError as exc:
            bad.append((line, invalid_row_reason(exc, most=5)))
            continue
        labels = {t: label for t in targets if (label := clean_label(event.get(t))) is not None}
        rows.append(Row(line, ticket, labels))
    return rows, bad


def backfill(
    request: BackfillRequest,
    *,
    pipeline: LabelingPipeline,
    store: ChromaVectorStore,
    model_version: str,
    review: ReviewPolicy = DEFAULT_POLICY,
    progress: bool = True,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackfillReport:
    """Label and store every valid row of ``request.path``; see the module docstring.

    ``review``: the worker's policy (its threshold serves targets without a cut of their own).
    """
    path, batch_size, force = request.path, request.batch_size, request.force
    if batch_size < 1:
        raise BackfillError(f"batch size must be at least 1, not {batch_size}")
    started = time.perf_counter()
    targets = list(request.targets or pipeline.classifier.targets)
    rows, bad = read_rows(
        path,
        targets=targets,
        mapping=request.mapping,
        limits=request.limits,
        encoding=request.encoding,
    )
    report = BackfillReport(path=path, model_version=model_version, bad=bad)
    report.rows = len(rows) + len(bad)
    for line, reason in bad[:10]:
        logger.warning("%s:%d: skipped: %s", path, line, reason)
    if not any(row.labels for row in rows) and rows:
        logger.warning(
            "%s: no row has a label in %s: nothing is imported, the model's labels are stored",
            path,
            targets,
        )
    # The last row of an id wins, as the last event of a key does in the worker.
    last = {row.ticket.ticket_id: i for i, row in enumerate(rows)}
    report.duplicates = len(rows) - len(last)
    unique = [rows[i] for i in sorted(last.values())]
    # disable=None: tqdm draws its bar only when stderr is a terminal; the summary is logged.
    bar = tqdm(
        total=len(unique),
        desc=f"backfill {path.name}",
        unit="ticket",
        disable=True if not progress else None,
    )
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-store")
    pending: Future[None] | None = None
    chunks = [unique[start : start + batch_size] for start in range(0, len(unique), batch_size)]
    stored_next = _lookup(store, chunks[0]) if chunks else {}
    try:
        for number, chunk in enumerate(chunks):
            stored = stored_next
            todo = [
                row
                for row in chunk
                if force or not _unchanged(stored.get(row.ticket.ticket_id), row, model_version)
            ]
            report.unchanged += len(chunk) - len(todo)
            batch = (  # labelled while the previous batch is written
                _labelled(
                    todo,
                    stored,
                    pipeline=pipeline,
                    stamp=Stamp.of(
                        pipeline, model_version=model_version, policy=review, processed_at=clock()
                    ),
                    document=request.document,
                    source=path.name,
                    report=report,
                )
                if todo
                else None
            )
            if pending is not None:
                pending.result()  # one write in flight; its error stops the run here
                pending = None
            # The next lookup between two writes: beside a write it would wait for it (the
            # store serialises them), and ids differ between chunks, so it may run early.
            if number + 1 < len(chunks):
                stored_next = _lookup(store, chunks[number + 1])
            if batch is not None:
                pending = writer.submit(_write, store, batch, report)
            bar.update(len(chunk))
            bar.set_postfix_str(
                f"wrote {report.written}, unchanged {report.unchanged}", refresh=False
            )
        if pending is not None:
            pending.result()
    finally:
        writer.shutdown(wait=True)
        bar.close()
    report.seconds = time.perf_counter() - started
    logger.info("backfill %s", report.summary())
    return report


@dataclass
class _Batch:
    """One batch's records, labelled and ready to upsert."""

    ids: list[str]
    vectors: FloatMatrix
    metadatas: list[layout.Metadata]
    documents: list[str] | None
    with_labels: int


def _lookup(store: ChromaVectorStore, rows: Sequence[Row]) -> dict[str, StoredRecord]:
    return store.records([row.ticket.ticket_id for row in rows])


def _write(store: ChromaVectorStore, batch: _Batch, report: BackfillReport) -> None:
    store.upsert(batch.ids, batch.vectors, batch.metadatas, batch.documents)
    # Counted once stored (one writer thread; the caller reads the report after it joined).
    report.written += len(batch.ids)
    report.with_labels += batch.with_labels


def _labelled(
    rows: Sequence[Row],
    stored: Mapping[str, StoredRecord],
    *,
    pipeline: LabelingPipeline,
    stamp: Stamp,
    document: str,
    source: str,
    report: BackfillReport,
) -> _Batch | None:
    tickets = [row.ticket for row in rows]
    begun = time.perf_counter()
    try:
        result = pipeline.run(tickets)
    except Exception:  # one poisonous ticket must not stop the file: find it alone
        logger.warning("a batch failed; labelling its %d tickets one at a time", len(tickets))
        result, failures = pipeline.run_each(tickets)
        for index, exc in failures:
            report.bad.append((rows[index].line, f"labelling failed: {type(exc).__name__}: {exc}"))
    report.embed_seconds += time.perf_counter() - begun
    if not result.indices:
        return None
    ids: list[str] = []
    metadatas: list[layout.Metadata] = []
    texts: list[str] = []
    for position, index in enumerate(result.indices):
        row = rows[index]
        # What the worker would have published; its position is the file's line.
        labeled = labeled_ticket(
            row.ticket,
            result.predictions[position],
            stamp,
            source=SourcePosition(topic=f"file:{source}", partition=0, offset=row.line),
        )
        current = stored.get(row.ticket.ticket_id)
        metadatas.append(
            layout.imported_metadata(
                labeled,
                row.labels,
                current.metadata if current else None,
                source=source,
                imported_at=stamp.processed_at.timestamp(),
            )
        )
        ids.append(row.ticket.ticket_id)
        texts.append(result.texts[position])
    with_labels = sum(bool(rows[index].labels) for index in result.indices)
    return _Batch(ids, result.vectors, metadatas, stored_documents(texts, document), with_labels)


def _unchanged(record: StoredRecord | None, row: Row, model_version: str) -> bool:
    if record is None or record.metadata.get("model_version") != model_version:
        return False
    return all(layout.imported_label(record.metadata, t) == v for t, v in row.labels.items())
