"""One micro-batch: decode, label, store the vectors, publish; dead-letter what fails.

Framework-free on purpose: the Faust agent turns its events into :class:`RawEvent` and
awaits :meth:`BatchLabeler.handle`; tests drive the same code without Faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from models.pipeline import BatchResult, LabelingPipeline
from models.redaction import redact
from monitoring.metrics import WorkerMetrics
from schemas import DeadLetter, DeadLetterReason, FieldLimits, LabeledTicket, MonitorRecord, Ticket
from stream.outputs import labeled_ticket, monitor_record, vector_metadata
from stream.routing import Position, Rejected, dead_letter, decode_ticket
from stream.vector_store import VectorStore

logger = logging.getLogger(__name__)

Send = Callable[[bytes | None, bytes], Awaitable[None]]


@dataclass(frozen=True)
class RawEvent:
    key: bytes | None
    value: bytes | None
    position: Position
    timestamp: float | None = None  # Kafka message timestamp, seconds


@dataclass(frozen=True)
class BatchLimits:
    fields: FieldLimits
    max_message_bytes: int
    dlq_keep_bytes: int
    review_threshold: float
    document: str = "none"  # none | redacted | full: the model text kept in the vector store


@dataclass
class BatchOutcome:
    labeled: list[LabeledTicket]
    dead: list[DeadLetter]


def _json_bytes(model: LabeledTicket | DeadLetter | MonitorRecord) -> bytes:
    return model.model_dump_json().encode("utf-8")


class BatchLabeler:
    """Runs the pure pipeline off the event loop and writes its outputs before returning.

    Returning normally means every event of the batch is on ``labeled-tickets`` (and in the
    vector store) or on the dead-letter topic, so the caller may commit their offsets.
    """

    def __init__(
        self,
        *,
        pipeline: LabelingPipeline,
        store: VectorStore,
        model_version: str,
        send_labeled: Send,
        send_dead: Send,
        executor: Executor,
        metrics: WorkerMetrics,
        limits: BatchLimits,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        send_monitor: Send | None = None,
        store_executor: Executor | None = None,
        chunk_size: int = 0,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.model_version = model_version
        self.send_labeled = send_labeled
        self.send_dead = send_dead
        self.executor = executor
        self.metrics = metrics
        self.limits = limits
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.send_monitor = send_monitor
        # Vector writes on their own thread, so they overlap the next chunk's labelling;
        # without one they queue behind it on the model thread.
        self.store_executor = store_executor or executor
        self.chunk_size = chunk_size  # 0: the whole batch is one chunk

    async def handle(self, events: Sequence[RawEvent]) -> BatchOutcome:
        """Label, store and publish ``events``; returns once every output is acknowledged.

        With ``chunk_size`` the batch goes through in chunks, and the next chunk is labelled
        (on the model thread) while this one is written and published, so the encoder is
        not idle while the broker and the vector store answer. Each chunk is still stored
        before it is published, and published in input order.
        """
        loop = asyncio.get_running_loop()
        self.metrics.consumed.inc(len(events))
        self.metrics.batch_size.observe(len(events))
        started = time.perf_counter()
        tickets: list[tuple[Ticket, RawEvent]] = []
        dead: list[DeadLetter] = []
        for event in events:
            decoded = decode_ticket(
                event.value, limits=self.limits.fields, max_bytes=self.limits.max_message_bytes
            )
            if isinstance(decoded, Rejected):
                dead.append(self._dead(event, decoded))
            else:
                tickets.append((decoded, event))
        self.metrics.stage_seconds.labels(stage="decode").observe(time.perf_counter() - started)

        size = self.chunk_size if self.chunk_size > 0 else max(1, len(tickets))
        chunks = [tickets[i : i + size] for i in range(0, len(tickets), size)]
        if not chunks:  # nothing decoded: only dead letters
            await self._publish([], dead, events)
            return BatchOutcome(labeled=[], dead=dead)
        labeled: list[LabeledTicket] = []
        all_dead = list(dead)
        pending = loop.run_in_executor(self.executor, self._label, [t for t, _ in chunks[0]])
        try:
            for number, chunk in enumerate(chunks):
                results, failures = await pending
                if number + 1 < len(chunks):
                    pending = loop.run_in_executor(
                        self.executor, self._label, [t for t, _ in chunks[number + 1]]
                    )
                # The batch's dead letters go out with its first chunk.
                chunk_labeled, chunk_dead = await self._finish_chunk(
                    chunk, results, failures, dead if number == 0 else [], events
                )
                labeled += chunk_labeled
                all_dead += chunk_dead
        finally:
            if not pending.done():
                # A write or send failed mid-batch: the batch will be redelivered; the
                # labelling already running is dropped, and its outcome must not warn.
                pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        return BatchOutcome(labeled=labeled, dead=all_dead)

    async def _finish_chunk(
        self,
        chunk: Sequence[tuple[Ticket, RawEvent]],
        results: BatchResult,
        failures: Sequence[tuple[int, BaseException]],
        dead: Sequence[DeadLetter],
        events: Sequence[RawEvent],
    ) -> tuple[list[LabeledTicket], list[DeadLetter]]:
        """Store one labelled chunk's vectors, then publish its labels (and ``dead``)."""
        for stage, seconds in results.timings.items():
            self.metrics.stage_seconds.labels(stage=stage).observe(seconds)
        for kind, count in results.counts.items():
            self.metrics.pipeline_rows.labels(kind=kind).inc(count)
        failed: list[DeadLetter] = []
        for index, exc in failures:
            ticket, event = chunk[index]
            reason = f"{type(exc).__name__}: {exc}"
            rejected = Rejected(DeadLetterReason.PROCESSING_ERROR, reason, ticket.ticket_id)
            failed.append(self._dead(event, rejected))
        building = time.perf_counter()
        now = datetime.now(UTC)
        thresholds = self.pipeline.review_thresholds(self.limits.review_threshold)
        labeled = [
            labeled_ticket(
                chunk[index][0],
                prediction,
                chunk[index][1].position,
                model_version=self.model_version,
                embedding_model=self.pipeline.encoder.name,
                review_thresholds=thresholds,
                processed_at=now,
            )
            for index, prediction in zip(results.indices, results.predictions, strict=True)
        ]
        monitor = []
        if self.send_monitor is not None and labeled:
            monitor = [
                monitor_record(t, chunk[i][0], results.vectors[row], results.texts[row])
                for row, (t, i) in enumerate(zip(labeled, results.indices, strict=True))
            ]
        self.metrics.stage_seconds.labels(stage="outputs").observe(time.perf_counter() - building)
        await self._write_vectors(labeled, results)
        await self._publish(labeled, [*dead, *failed], events, monitor)
        return labeled, failed

    def _label(
        self, tickets: Sequence[Ticket]
    ) -> tuple[BatchResult, list[tuple[int, BaseException]]]:
        return self.pipeline.run_isolating(tickets)

    def _dead(self, event: RawEvent, rejected: Rejected) -> DeadLetter:
        self.metrics.dead_lettered.labels(reason=rejected.error_type.value).inc()
        logger.info(
            "dead letter %s@%d:%d %s: %s",
            event.position.topic,
            event.position.partition,
            event.position.offset,
            rejected.error_type.value,
            rejected.reason,
        )
        return dead_letter(
            event.value,
            rejected,
            event.position,
            keep_bytes=self.limits.dlq_keep_bytes,
            key=event.key,
        )

    async def _write_vectors(self, labeled: Sequence[LabeledTicket], results: BatchResult) -> None:
        if not labeled:
            return
        # Chroma refuses duplicate ids in one call; the last event for an id wins, as in Kafka.
        last: dict[str, int] = {t.ticket_id: i for i, t in enumerate(labeled)}
        rows = sorted(last.values())
        ids = [labeled[i].ticket_id for i in rows]
        vectors = results.vectors[rows]
        metadatas = [vector_metadata(labeled[i]) for i in rows]
        documents = None
        if self.limits.document == "full":
            documents = [results.texts[i] for i in rows]
        elif self.limits.document == "redacted":
            documents = [redact(results.texts[i]) for i in rows]
        loop = asyncio.get_running_loop()
        delay = self.retry_initial_s
        while True:
            started = time.perf_counter()
            try:
                await loop.run_in_executor(
                    self.store_executor,
                    lambda: self.store.upsert(ids, vectors, metadatas, documents),
                )
            except Exception as exc:  # any client/transport error: retry, never drop the batch
                self.metrics.vector_store_errors.inc()
                self.metrics.vector_store_up.set(0)
                logger.warning("vector store write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.metrics.vector_store_up.set(1)
            self.metrics.stage_seconds.labels(stage="vector_write").observe(
                time.perf_counter() - started
            )
            return

    async def _publish(
        self,
        labeled: Sequence[LabeledTicket],
        dead: Sequence[DeadLetter],
        events: Sequence[RawEvent],
        monitor: Sequence[MonitorRecord] = (),
    ) -> None:
        started = time.perf_counter()
        sends = [self.send_labeled(t.ticket_id.encode("utf-8"), _json_bytes(t)) for t in labeled]
        sends += [
            self.send_dead(d.ticket_id.encode("utf-8") if d.ticket_id else None, _json_bytes(d))
            for d in dead
        ]
        if self.send_monitor is not None:
            sends += [
                self.send_monitor(m.ticket_id.encode("utf-8"), _json_bytes(m)) for m in monitor
            ]
        await asyncio.gather(*sends)
        finished = time.perf_counter()
        self.metrics.stage_seconds.labels(stage="produce").observe(finished - started)
        self.metrics.labeled.inc(len(labeled))
        self.metrics.needs_review.inc(sum(1 for t in labeled if t.needs_review))
        now = time.time()
        by_position = {(e.position.partition, e.position.offset): e for e in events}
        for t in labeled:
            event = by_position.get((t.source.partition, t.source.offset))
            if event is not None and event.timestamp:
                self.metrics.end_to_end_seconds.observe(max(0.0, now - event.timestamp))
