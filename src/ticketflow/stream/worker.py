"""One micro-batch: decode, label, store the vectors, publish; dead-letter what fails.

Framework-free on purpose: the Faust agent turns its events into :class:`RawEvent` and
submits them to :class:`InFlight`, which awaits :meth:`BatchLabeler.handle`; tests drive the
same code without Faust.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import numpy as np
import tenacity

from ticketflow.adapters.store import Neighbour, VectorStore, VectorStoreError, is_permanent
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.pipeline import BatchResult, LabelingPipeline
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.models.redaction import stored_documents
from ticketflow.models.review import ReviewPolicy
from ticketflow.monitoring.incidents import Detection, IncidentDetector, Observation
from ticketflow.schemas import (
    DeadLetter,
    DeadLetterReason,
    FieldLimits,
    IncidentEvent,
    LabeledTicket,
    MonitorRecord,
    Ticket,
)
from ticketflow.schemas.labeled import SimilarTicketRef
from ticketflow.schemas.store import MetadataValue, labeled_metadata
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.outputs import (
    monitor_record,
    possible_duplicate,
    similar_tickets,
)
from ticketflow.stream.routing import Position, Rejected, dead_letter, decode_ticket

logger = logging.getLogger(__name__)

Send = Callable[[bytes | None, bytes], Awaitable[None]]
T = TypeVar("T")


class SearchableStore(VectorStore, Protocol):
    """The vector store as the worker uses it: written, and searched when SIMILAR_K > 0
    (:class:`ticketflow.adapters.store.ChromaVectorStore`)."""

    def query(
        self,
        vectors: FloatMatrix,
        k: int,
        *,
        where: Mapping[str, MetadataValue] | None = None,
        documents: bool = False,
    ) -> list[list[Neighbour]]: ...


@dataclass(frozen=True)
class RawEvent:
    key: bytes | None
    value: bytes | None
    position: Position
    timestamp: float | None = None  # Kafka message timestamp, seconds


@dataclass(frozen=True)
class BatchLimits:
    """What a batch is held to: input limits, what a dead letter keeps, the review policy,
    the model text kept in the vector store (none | redacted | full), and the backoff of
    vector-store retries."""

    fields: FieldLimits
    max_message_bytes: int
    dlq_keep_bytes: int
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    document: str = "redacted"  # the CHROMA_DOCUMENT default: retrain learns from it
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0


@dataclass(frozen=True)
class Sinks:
    """Where a batch's outputs are sent: ``labeled-tickets``, the dead-letter topic and,
    when the drift monitor is fed, its topic."""

    labeled: Send
    dead: Send
    monitor: Send | None = None
    incidents: Send | None = None


@dataclass(frozen=True)
class Threads:
    """``model``: the transformer half of the pipeline; ``store``: vector-store calls, so
    writes overlap the next batch's labelling; ``prepare``: the first half of the next batch;
    ``incidents``: the incident detector, so it runs beside the batch's similarity query and
    vector write instead of on the event loop. Unset ones share ``model``."""

    model: Executor
    store: Executor | None = None
    prepare: Executor | None = None
    incidents: Executor | None = None


@dataclass(frozen=True)
class SimilarSearch:
    """``k`` nearest tickets on each labelled ticket (SIMILAR_K); the nearest is its
    ``possible_duplicate_of`` when closer than ``duplicate_max_distance``."""

    k: int
    duplicate_max_distance: float


# Batches kept in memory for the similarity search: the batches ahead of one in flight,
# WORKER_INFLIGHT_BATCHES - 1 at most, must be among them.
RECENT_BATCHES = 64


@dataclass(frozen=True)
class _Search:
    found: list[list[Neighbour]]
    written: int  # the batches up to this number were in the store before the query


@dataclass(frozen=True)
class _Recent:
    number: int
    ids: list[str]
    vectors: FloatMatrix


@dataclass
class BatchOutcome:
    labeled: list[LabeledTicket]
    dead: list[DeadLetter]


def _json_bytes(model: LabeledTicket | DeadLetter | MonitorRecord | IncidentEvent) -> bytes:
    return model.model_dump_json().encode("utf-8")


class BatchLabeler:
    """Runs the pure pipeline off the event loop and writes its outputs before returning.

    Returning normally means every event of the batch is on ``labeled-tickets`` (and in the
    vector store) or on the dead-letter topic, so the caller may commit their offsets.
    """

    # Keyword-only, one per collaborator: grouping them would only hide which is which.
    def __init__(  # noqa: PLR0913
        self,
        *,
        pipeline: LabelingPipeline,
        store: SearchableStore,
        model_version: str,
        sinks: Sinks,
        threads: Threads,
        metrics: WorkerMetrics,
        limits: BatchLimits,
        similar: SimilarSearch | None = None,
        incidents: IncidentDetector | None = None,
    ) -> None:
        self.pipeline = pipeline
        # Emerging incidents: fed each batch in order (once the batch ahead is published) on
        # their own thread, and awaited before publishing, so a member's labelled ticket
        # carries its incident id.
        self.incidents = incidents
        self.incidents_executor = threads.incidents or threads.model
        self.store = store
        self.model_version = model_version
        self.send_labeled = sinks.labeled
        self.send_dead = sinks.dead
        self.send_monitor = sinks.monitor
        self.send_incidents = sinks.incidents
        self.executor = threads.model
        self.metrics = metrics
        self.limits = limits
        self.retry_initial_s = limits.retry_initial_s
        self.retry_max_s = limits.retry_max_s
        # Vector writes on their own thread, so they overlap the next batch's labelling;
        # without one they queue behind it on the model thread.
        self.store_executor = threads.store or threads.model
        # The first half of the next batch (text, TF-IDF, static stage) on its own thread.
        self.prepare_executor = threads.prepare or threads.model
        self.similar = similar
        # Batches labelled with SIMILAR_K, newest last, numbered; ``_written``: the number of
        # the last one whose vectors are in the store. A similarity query started before the
        # batches ahead of it were written finds their tickets here instead (_similar).
        self._recent: deque[_Recent] = deque(maxlen=RECENT_BATCHES)
        self._written = 0

    def handle(
        self, events: Sequence[RawEvent], *, after: Awaitable[object] | None = None
    ) -> Coroutine[None, None, BatchOutcome]:
        """Label, store and publish ``events``; returns once every output is acknowledged.

        With ``after`` (the previous batch, still being written) this batch is labelled at
        once but stored and published only when ``after`` has finished, so the encoder works
        while the vector store and the broker answer, and batches still come out in input
        order. If ``after`` failed, this batch fails too, unpublished.
        """
        # The model is taken when the batch is handed over, not when its task first runs: a
        # hot swap may land while it waits, and it is labelled and stamped by one model.
        return self._handle(events, after, self.pipeline, self.model_version)

    async def _handle(
        self,
        events: Sequence[RawEvent],
        after: Awaitable[object] | None,
        pipeline: LabelingPipeline,
        model_version: str,
    ) -> BatchOutcome:
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
        results: BatchResult | None = None
        failures: list[tuple[int, BaseException]] = []
        if tickets:
            results, failures = await self._label(pipeline, [t for t, _ in tickets])
        searching = self._search(results)
        try:
            if after is not None:
                await after
        except BaseException:
            if searching is not None:
                searching.cancel()
            raise
        if results is None:  # nothing decoded: only dead letters
            await self._publish([], dead, events)
            return BatchOutcome(labeled=[], dead=dead)
        labeled, failed = await self._finish(
            pipeline, model_version, tickets, results, failures, dead, events, searching
        )
        return BatchOutcome(labeled=labeled, dead=[*dead, *failed])

    def _search(self, results: BatchResult | None) -> asyncio.Task[_Search] | None:
        """Start the batch's similarity query (SIMILAR_K) as soon as it is labelled.

        It runs while the batches ahead are still being written, so it is not on the path
        from one batch's write to the next one's. It may miss their tickets: those are
        compared in memory once they are done (:meth:`_similar`).
        """
        if self.similar is None or results is None or not results.indices:
            return None
        vectors, k, written = results.vectors, self.similar.k + 1, self._written
        # One more than k: a redelivered ticket finds its own earlier record, left out.
        querying = self._store_call(
            "similarity query", "similar_query", lambda: self.store.query(vectors, k)
        )

        async def search() -> _Search:
            return _Search(found=await querying, written=written)

        task = asyncio.ensure_future(search())
        # Retrieved here when the batch fails before awaiting it (logged with the batch).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _label(
        self, pipeline: LabelingPipeline, tickets: list[Ticket]
    ) -> tuple[BatchResult, list[tuple[int, BaseException]]]:
        """Both halves of the pipeline, each on its own thread: with batches in flight, the
        next batch's Python-bound first half runs while this one's transformer does. When the
        batch raises, each ticket is retried alone, so a poisonous one fails by itself."""
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self.prepare_executor, pipeline.prepare, tickets)
            return await loop.run_in_executor(self.executor, pipeline.finish, prepared), []
        except Exception:
            logger.exception("batch of %d failed; retrying ticket by ticket", len(tickets))
        return await loop.run_in_executor(self.executor, pipeline.run_each, tickets)

    async def _finish(
        self,
        pipeline: LabelingPipeline,
        model_version: str,
        tickets: Sequence[tuple[Ticket, RawEvent]],
        results: BatchResult,
        failures: Sequence[tuple[int, BaseException]],
        dead: Sequence[DeadLetter],
        events: Sequence[RawEvent],
        searching: asyncio.Task[_Search] | None = None,
    ) -> tuple[list[LabeledTicket], list[DeadLetter]]:
        """Store the labelled tickets' vectors, then publish their labels (and ``dead``)."""
        # The batches ahead have been through the incident detector (they are published):
        # this one's turn, on its thread, while the similarity query and the vector write
        # below are awaited.
        observing = self._observe(tickets, results)
        for stage, seconds in results.timings.items():
            self.metrics.stage_seconds.labels(stage=stage).observe(seconds)
        for kind, count in results.counts.items():
            self.metrics.pipeline_rows.labels(kind=kind).inc(count)
        failed: list[DeadLetter] = []
        for index, exc in failures:
            ticket, event = tickets[index]
            reason = f"{type(exc).__name__}: {exc}"
            rejected = Rejected(DeadLetterReason.PROCESSING_ERROR, reason, ticket.ticket_id)
            failed.append(self._dead(event, rejected))
        similar = await self._similar(tickets, results, searching)
        building = time.perf_counter()
        stamp = Stamp.of(
            pipeline,
            model_version=model_version,
            policy=self.limits.review,
            processed_at=datetime.now(UTC),
        )
        labeled = [
            labeled_ticket(
                tickets[index][0],
                prediction,
                stamp,
                source=tickets[index][1].position.source(),
                similar=near,
                possible_duplicate_of=duplicate,
            )
            for index, prediction, near, duplicate in zip(
                results.indices,
                results.predictions,
                similar,
                self._duplicates(similar),
                strict=True,
            )
        ]
        monitor = []
        if self.send_monitor is not None and labeled:
            monitor = [
                monitor_record(t, tickets[i][0], results.vectors[row], results.texts[row])
                for row, (t, i) in enumerate(zip(labeled, results.indices, strict=True))
            ]
        self.metrics.stage_seconds.labels(stage="outputs").observe(time.perf_counter() - building)
        tags = [tickets[index][0].tags for index in results.indices]
        # The vector store keeps no incident id: the write need not wait for the detector.
        await self._write_vectors(labeled, results, tags)
        labeled, incidents = await self._incidents(labeled, observing)
        await self._publish(labeled, [*dead, *failed], events, monitor, incidents)
        return labeled, failed

    def _observe(
        self, tickets: Sequence[tuple[Ticket, RawEvent]], results: BatchResult
    ) -> asyncio.Future[Detection] | None:
        """Start the batch through the incident detector on its thread.

        Called once the batch ahead is published, so batches reach the detector in order.
        """
        detector = self.incidents
        if detector is None or not results.indices:
            return None
        now = datetime.now(UTC)
        observations = []
        for row, (index, prediction) in enumerate(
            zip(results.indices, results.predictions, strict=True)
        ):
            ticket, event = tickets[index]
            # Event time: created_at, else the Kafka timestamp, so a replay of history
            # behaves like the live stream.
            moment = ticket.created_at or (
                datetime.fromtimestamp(event.timestamp, tz=UTC) if event.timestamp else now
            )
            observations.append(
                Observation(
                    ticket_id=ticket.ticket_id,
                    event_time=moment,
                    vector=results.vectors[row],
                    labels={t: p.label for t, p in prediction.items()},
                    text=results.texts[row],
                )
            )

        def observe() -> Detection:
            started = time.perf_counter()
            found = detector.observe(observations)
            # The detector's own time (its thread), apart from what the batch waited for it.
            self.metrics.stage_seconds.labels(stage="incidents").observe(
                time.perf_counter() - started
            )
            return found

        loop = asyncio.get_running_loop()
        observing = loop.run_in_executor(self.incidents_executor, observe)
        # Retrieved here when the batch fails before awaiting it (logged with the batch).
        observing.add_done_callback(lambda f: f.cancelled() or f.exception())
        return observing

    async def _incidents(
        self, labeled: list[LabeledTicket], observing: asyncio.Future[Detection] | None
    ) -> tuple[list[LabeledTicket], list[IncidentEvent]]:
        """The detector's answer for the batch: members get ``incident_id``."""
        if observing is None or self.incidents is None:
            return labeled, []
        started = time.perf_counter()
        found = await observing
        self.metrics.stage_seconds.labels(stage="incidents_wait").observe(
            time.perf_counter() - started
        )
        self.metrics.count_incidents(found.events, len(found.open_ids))
        labeled = [
            t.model_copy(update={"incident_id": found.assigned[t.ticket_id]})
            if t.ticket_id in found.assigned
            else t
            for t in labeled
        ]
        return labeled, found.events

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

    async def _write_vectors(
        self,
        labeled: Sequence[LabeledTicket],
        results: BatchResult,
        tags: Sequence[Sequence[str]],
    ) -> None:
        if not labeled:
            return
        # Chroma refuses duplicate ids in one call; the last event for an id wins, as in Kafka.
        last: dict[str, int] = {t.ticket_id: i for i, t in enumerate(labeled)}
        rows = sorted(last.values())
        ids = [labeled[i].ticket_id for i in rows]
        vectors = results.vectors[rows]
        metadatas = [labeled_metadata(labeled[i], tags[i]) for i in rows]
        documents = stored_documents([results.texts[i] for i in rows], self.limits.document)
        await self._store_call(
            "write", "vector_write", lambda: self.store.upsert(ids, vectors, metadatas, documents)
        )
        if self._recent:
            # Batches are written in order: this one and every one before it are stored.
            self._written = self._recent[-1].number

    async def _similar(
        self,
        tickets: Sequence[tuple[Ticket, RawEvent]],
        results: BatchResult,
        searching: asyncio.Task[_Search] | None,
    ) -> list[list[SimilarTicketRef]]:
        """Each labelled ticket's nearest tickets seen before it (none when SIMILAR_K=0).

        Called once the batches ahead are written and published, before this batch's own
        write. Candidates: the store's answer to the query :meth:`_search` started, which
        holds no ticket of this batch; the batches the store may not have held yet when the
        query was sent (written after it); and this batch's earlier rows. Querying after the
        batch's own write would find each copy's twin both ways round, and the original
        would be called a duplicate of its copy.
        """
        if searching is None or self.similar is None:
            return [[] for _ in results.indices]
        search = await searching
        ids = [tickets[index][0].ticket_id for index in results.indices]
        unwritten = [batch for batch in self._recent if batch.number > search.written]
        found = similar_tickets(
            ids,
            results.vectors,
            search.found,
            k=self.similar.k,
            earlier_ids=[i for batch in unwritten for i in batch.ids],
            earlier_vectors=(
                np.vstack([batch.vectors for batch in unwritten]) if unwritten else None
            ),
        )
        number = (self._recent[-1].number if self._recent else self._written) + 1
        self._recent.append(_Recent(number=number, ids=ids, vectors=results.vectors))
        return found

    def _duplicates(self, similar: Sequence[Sequence[SimilarTicketRef]]) -> list[str | None]:
        if self.similar is None:
            return [None] * len(similar)
        cut = self.similar.duplicate_max_distance
        return [possible_duplicate(near, cut) for near in similar]

    async def _store_call(self, what: str, stage: str, call: Callable[[], T]) -> T:
        """``call`` on the store thread, under the vector store's error policy; the
        successful try is timed as ``stage``.

        Transient errors (connection refused, timeouts, a restarting server) are retried
        with jittered backoff for as long as they last: a batch is never dropped, and its
        offsets stay uncommitted meanwhile. A permanent one (wrong dimension, missing
        collection, refused credentials) would come back on every try and stall the
        partition for good: it fails the batch, and the worker, with its reason.
        """
        loop = asyncio.get_running_loop()
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(lambda exc: not is_permanent(exc)),
            wait=tenacity.wait_exponential_jitter(
                initial=self.retry_initial_s, max=self.retry_max_s
            ),
            before_sleep=lambda state: self._store_call_failed(what, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    started = time.perf_counter()
                    result = await loop.run_in_executor(self.store_executor, call)
                    self.metrics.stage_seconds.labels(stage=stage).observe(
                        time.perf_counter() - started
                    )
                    self.metrics.vector_store_up.set(1)
                    return result
        except Exception as exc:
            self.metrics.vector_store_errors.inc()
            self.metrics.vector_store_up.set(0)
            raise VectorStoreError(
                f"the vector store refused a {what} for good ({type(exc).__name__}: {exc}); "
                "check CHROMA_COLLECTION (one collection per model vector space), "
                "CHROMA_HOST/CHROMA_AUTH_TOKEN and the server"
            ) from exc
        raise AssertionError("unreachable: tenacity returns or raises")

    def _store_call_failed(self, what: str, state: tenacity.RetryCallState) -> None:
        self.metrics.vector_store_errors.inc()
        self.metrics.vector_store_up.set(0)
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning("vector store %s failed (%s); retrying in %.1fs", what, exc, wait)

    async def _publish(
        self,
        labeled: Sequence[LabeledTicket],
        dead: Sequence[DeadLetter],
        events: Sequence[RawEvent],
        monitor: Sequence[MonitorRecord] = (),
        incidents: Sequence[IncidentEvent] = (),
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
        if self.send_incidents is not None:
            sends += [
                self.send_incidents(e.incident_id.encode("utf-8"), _json_bytes(e))
                for e in incidents
            ]
        await asyncio.gather(*sends)
        finished = time.perf_counter()
        self.metrics.stage_seconds.labels(stage="produce").observe(finished - started)
        self.metrics.labeled.inc(len(labeled))
        self.metrics.count_review(labeled)
        now = time.time()
        by_position = {(e.position.partition, e.position.offset): e for e in events}
        for t in labeled:
            event = by_position.get((t.source.partition, t.source.offset))
            if event is not None and event.timestamp:
                self.metrics.end_to_end_seconds.observe(max(0.0, now - event.timestamp))


class InFlight:
    """Up to ``depth`` micro-batches in flight, finished in the order they were submitted.

    Batch n+1 is labelled while batch n is stored and published, so the encoder need not
    wait for the vector store and the broker, and batch n+1's Python half
    (:meth:`LabelingPipeline.prepare`, on its own thread) runs while batch n's transformer
    half does: that overlap is what brings the pipeline close to its in-process core
    (measured in docs/speed.md).
    ``on_done`` runs after a batch's outputs are all acknowledged; the caller acks the
    batch's offsets there, never earlier. A failed batch is re-raised from :meth:`submit`
    or :meth:`drain`, and the batches behind it fail unpublished.
    """

    def __init__(self, labeler: BatchLabeler, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.labeler = labeler
        self.depth = depth
        self._tasks: deque[asyncio.Task[BatchOutcome]] = deque()

    def __len__(self) -> int:
        return len(self._tasks)

    async def submit(
        self, events: Sequence[RawEvent], on_done: Callable[[], Awaitable[None]]
    ) -> None:
        """Start ``events``; returns once fewer than ``depth`` batches are in flight."""
        if self.depth == 1:  # one at a time, on the caller's task
            await self.labeler.handle(events)
            await on_done()
            return
        previous = self._tasks[-1] if self._tasks else None
        handling = self.labeler.handle(events, after=previous)
        task = asyncio.create_task(self._run(handling, on_done))
        # A batch that fails because the one before it failed is reported once, by that one.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._tasks.append(task)
        while len(self._tasks) >= self.depth:
            await self._finish_oldest()

    async def drain(self) -> None:
        """Wait for every batch in flight."""
        while self._tasks:
            await self._finish_oldest()

    async def _finish_oldest(self) -> None:
        # Shielded: a rebalance cancels the agent, but a batch already started still
        # finishes and acks, so its offsets can be committed before the handover.
        await asyncio.shield(self._tasks[0])
        self._tasks.popleft()

    @staticmethod
    async def _run(
        handling: Awaitable[BatchOutcome], on_done: Callable[[], Awaitable[None]]
    ) -> BatchOutcome:
        outcome = await handling
        await on_done()
        return outcome


class Committer:
    """Commits the acked offsets right after each batch, off the batches' path.

    :meth:`request` returns at once, so the next batch's writes never wait for the broker's
    answer to a commit. One commit runs at a time; requests that come while it runs are
    folded into one more commit after it, which picks up every offset acked meanwhile. So a
    crash replays the batches in flight and at most one finished batch whose commit was on
    its way, instead of everything since the last commit timer tick.
    A failed commit is logged and left to the next request (or Faust's commit timer).
    """

    def __init__(self, commit: Callable[[], Awaitable[object]]) -> None:
        self._commit = commit
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run())

    async def wait(self) -> None:
        """Until no commit is running or requested."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._commit()
            except Exception:
                logger.warning("offset commit failed; retried after the next batch", exc_info=True)
            if not self._again:
                return
