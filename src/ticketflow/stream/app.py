"""Faust wiring: topics, the labelling agent, health and metrics pages. No logic lives here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ticketflow.config import Settings
from ticketflow.monitoring.incidents import IncidentDetector
from ticketflow.runtime.loading import Runtime, load_runtime
from ticketflow.runtime.reload import ModelReloader
from ticketflow.stream.feedback import FeedbackApplier
from ticketflow.stream.incidents import incident_config, restore, seed_history
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.offsets import FinishedOnly
from ticketflow.stream.reload import start_reloader, swap_if_ready
from ticketflow.stream.routing import Position
from ticketflow.stream.worker import (
    BatchLabeler,
    BatchLimits,
    Committer,
    InFlight,
    RawEvent,
    SimilarSearch,
    Sinks,
    Threads,
)

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    metrics: WorkerMetrics | None = None,
    runtime_loader: Callable[[Settings], Runtime] = load_runtime,
) -> faust.App:
    metrics = metrics or WorkerMetrics()
    connection = settings.kafka_connection()
    # Faust creates only the last level of its datadir.
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker_app_id,
        broker=connection.faust_broker(),
        broker_credentials=connection.faust_credentials(),
        store="memory://",
        # Faust makes "<app id>-data" in the working directory otherwise, even with memory://.
        datadir=str(settings.state_dir / "faust" / settings.worker_app_id),
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=settings.kafka_topic_replication,
        consumer_auto_offset_reset="earliest",
        web_port=settings.metrics_port,
        web_bind=settings.metrics_bind,
        web_host=settings.metrics_bind,
        producer_max_request_size=settings.kafka_max_message_bytes + 65_536,
        consumer_max_fetch_size=settings.kafka_max_message_bytes + 65_536,
        broker_commit_interval=settings.worker_commit_interval_s,
        processing_guarantee=settings.worker_processing_guarantee,
    )

    def raw_topic(name: str) -> faust.TopicT:
        # Raw bytes in and out: validation is ours, so a bad payload becomes a dead letter
        # instead of a deserialisation crash inside Faust.
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    tickets_topic = raw_topic(settings.kafka_topic_tickets)
    labeled_topic = raw_topic(settings.kafka_topic_labeled)
    dlq_topic = raw_topic(settings.kafka_topic_dlq)
    monitor_topic = raw_topic(settings.kafka_topic_monitor) if settings.monitor_enabled else None
    feedback_topic = raw_topic(settings.kafka_topic_feedback) if settings.feedback_enabled else None
    incidents_topic = (
        raw_topic(settings.kafka_topic_incidents) if settings.incidents_enabled else None
    )

    async def send_to(topic: faust.TopicT, key: bytes | None, value: bytes) -> None:
        delivery = await topic.send(key=key, value=value)
        await delivery  # wait for the broker's ack before the offsets may be committed

    service = LabelingService(
        settings,
        metrics,
        runtime_loader=runtime_loader,
        sinks=Sinks(
            labeled=lambda k, v: send_to(labeled_topic, k, v),
            dead=lambda k, v: send_to(dlq_topic, k, v),
            monitor=(
                (lambda k, v: send_to(monitor_topic, k, v)) if monitor_topic is not None else None
            ),
            incidents=(
                (lambda k, v: send_to(incidents_topic, k, v))
                if incidents_topic is not None
                else None
            ),
        ),
        with_feedback=feedback_topic is not None,
    )

    @functools.cache
    def offsets() -> FinishedOnly:
        # Built when an agent starts (the consumer exists by then); both agents share it.
        guarded = {settings.kafka_topic_tickets}
        if feedback_topic is not None:
            guarded.add(settings.kafka_topic_feedback)
        return FinishedOnly(app.consumer, guarded)

    @app.on_before_shutdown.connect
    def stop_service(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        service.stop()

    @app.agent(tickets_topic, name="label-tickets")
    async def label_tickets(stream: Any) -> None:  # faust.Stream; StreamT lacks take_events
        labeler = await service.start()
        finished = offsets()
        inflight = InFlight(labeler, depth=settings.worker_inflight_batches)
        committer = (
            Committer(partial(commit_acked, app.consumer))
            if settings.worker_commit_every_batch
            else None
        )
        waiting = time.perf_counter()
        async for events in stream.take_events(
            settings.worker_batch_max, within=settings.worker_batch_within_s
        ):
            # Between batches: time the agent had nothing to do (idle when the topic is empty).
            metrics.stage_seconds.labels(stage="wait").observe(time.perf_counter() - waiting)
            if committer is not None:
                # take_events has just acked the last batch; a batch whose outputs were acked
                # before this (always, with one batch in flight) is committed from here.
                committer.request()
            reloader = service.reloader
            if reloader is not None:
                # Between batches: batches in flight keep the model they started with.
                swap_if_ready(labeler, reloader, metrics)
            # take_events acks a batch as soon as the loop comes back for the next one; one
            # more reference per event holds the offsets until the batch's outputs are acked.
            for event in events:
                event.message.incref()
            await inflight.submit(
                [_raw_event(e) for e in events],
                partial(ack, stream, events, committer, finished),
            )
            waiting = time.perf_counter()

    if feedback_topic is not None:

        @app.agent(feedback_topic, name="apply-feedback")
        async def apply_feedback(stream: Any) -> None:
            await service.start()
            finished = offsets()
            feedback = service.feedback
            assert feedback is not None  # with_feedback=True builds it
            async for events in stream.take_events(
                settings.worker_batch_max, within=settings.worker_batch_within_s
            ):
                await feedback.handle([_raw_event(e) for e in events])
                # take_events acks them when the loop comes back for the next batch.
                finished.finished(e.message for e in events)

    @app.timer(interval=settings.lag_interval_s)  # type: ignore[untyped-decorator]
    async def update_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is None or highwater is None:
                continue
            lag = max(0, highwater - position)
            if tp not in consumer.assignment():  # revoked while its position was awaited
                continue
            metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    @app.on_partitions_revoked.connect
    async def forget_revoked_lag(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A revoked partition is another member's to report now: its last value here would
        # stay exported, summed with the new owner's, until this process ends. The
        # broker-side figure (the monitor's ticketflow_consumergroup_lag) is the one to alert on.
        (revoked,) = args  # set[TP]
        for tp in revoked:
            # KeyError: never reported (revoked before the first timer tick).
            with contextlib.suppress(KeyError):
                metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type, so the header is set directly.
        body = generate_latest(metrics.registry)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def ready(web: Any, request: Any) -> Any:
        ok = service.ready
        return web.json({"ready": ok}, status=200 if ok else 503)

    return app


Send = Callable[[bytes | None, bytes], Awaitable[None]]


class LabelingService:
    """The worker's long-lived parts: the runtime (encoders, model, vector store), the batch
    labeler, the hot-reload thread and the feedback applier, with their threads.

    Built once, on the first agent's :meth:`start` (both agents wait for the same build);
    :meth:`stop` (before Faust shuts down) stops the reload thread.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        *,
        runtime_loader: Callable[[Settings], Runtime],
        sinks: Sinks,
        with_feedback: bool,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.runtime_loader = runtime_loader
        self.sinks = sinks
        self.with_feedback = with_feedback
        # One thread each: the transformer half of the models labels one batch at a time
        # while the Python half prepares the next, and every ChromaDB call (vector writes,
        # feedback) goes through one thread, overlapping the next batch's labelling.
        self.model_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ticketflow-model"
        )
        self.prepare_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ticketflow-prepare"
        )
        self.store_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ticketflow-store"
        )
        # The incident detector, one batch at a time in order, beside the store's calls.
        self.incidents_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ticketflow-incidents"
        )
        self.labeler: BatchLabeler | None = None
        self.reloader: ModelReloader | None = None
        self.feedback: FeedbackApplier | None = None
        self._building = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.labeler is not None

    async def start(self) -> BatchLabeler:
        async with self._building:
            if self.labeler is None:
                self.labeler = await self._build()
        return self.labeler

    def stop(self) -> None:
        """Stop the reload thread. The executors stay up: the agents may still be finishing
        their last batch, and their threads end with the process."""
        if self.reloader is not None:
            self.reloader.stop()

    async def _build(self) -> BatchLabeler:
        settings, metrics = self.settings, self.metrics
        loop = asyncio.get_running_loop()
        runtime = await loop.run_in_executor(self.model_executor, self.runtime_loader, settings)
        # The model, tokenizer and Faust leave ~10^6 long-lived objects; without this the
        # cyclic GC rescans them over and over on the event loop thread, holding the GIL the
        # encoder thread needs (the loop thread was seen at 100% CPU in gc_collect_main).
        gc.collect()
        gc.freeze()
        metrics.set_model(
            runtime.model_version, runtime.pipeline.encoder.name, runtime.model.metadata.labels
        )
        if settings.model_reload_enabled and settings.model_version is None:
            self.reloader = start_reloader(settings, runtime, metrics)
        if self.with_feedback:
            self.feedback = FeedbackApplier(
                collection=runtime.store.collection,
                send_dead=self.sinks.dead,
                executor=self.store_executor,
                metrics=metrics,
                dlq_keep_bytes=settings.dlq_keep_bytes,
            )
        detector = (
            await loop.run_in_executor(self.store_executor, self._detector, runtime)
            if settings.incidents_enabled
            else None
        )
        metrics.ready.set(1)
        return BatchLabeler(
            pipeline=runtime.pipeline,
            store=runtime.store,
            model_version=runtime.model_version,
            sinks=self.sinks,
            threads=Threads(
                model=self.model_executor,
                store=self.store_executor,
                prepare=self.prepare_executor,
                incidents=self.incidents_executor,
            ),
            metrics=metrics,
            limits=BatchLimits(
                fields=settings.field_limits,
                max_message_bytes=settings.kafka_max_message_bytes,
                dlq_keep_bytes=settings.dlq_keep_bytes,
                review=settings.review_policy(),
                document=settings.chroma_document,
            ),
            similar=(
                SimilarSearch(
                    k=settings.similar_k,
                    duplicate_max_distance=settings.duplicate_max_distance,
                )
                if settings.similar_k > 0
                else None
            ),
            incidents=detector,
        )

    def _detector(self, runtime: Runtime) -> IncidentDetector:
        """The incident detector, its baseline from the store, its open incidents restored."""
        config = incident_config(self.settings)
        detector = IncidentDetector(config)
        seed_history(detector, runtime.store)
        restore(
            detector,
            self.settings.kafka_client_config(),
            self.settings.kafka_topic_incidents,
            runtime.store,
        )
        self.metrics.incidents_open.set(len(detector.open_ids))
        return detector


async def ack(
    stream: Any,
    events: Sequence[faust.EventT[bytes]],
    committer: Committer | None,
    finished: FinishedOnly,
) -> None:
    """The batch's outputs are acknowledged: release its offsets and have them committed."""
    finished.finished(e.message for e in events)
    for event in events:
        await stream.ack(event)
    if committer is not None:
        committer.request()


async def commit_acked(consumer: Any) -> None:
    """Commit every offset acked so far (``consumer``: Faust's Consumer; ConsumerT lacks
    ``maybe_wait_for_commit_to_finish``)."""
    # Faust runs one commit at a time: a call that finds one running waits for it and returns
    # without committing, and offsets acked after that one read them would wait for the
    # timer. No await between the wait ending and the commit starting, so none can slip in.
    while await consumer.maybe_wait_for_commit_to_finish():
        pass
    await consumer.commit()


def _raw_event(event: faust.EventT[bytes]) -> RawEvent:
    message = event.message
    return RawEvent(
        key=message.key,
        value=message.value,
        position=Position(topic=message.topic, partition=message.partition, offset=message.offset),
        timestamp=message.timestamp,
    )
