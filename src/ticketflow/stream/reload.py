"""Hot reload: load an announced model in the background, swap it in between two batches.

Every worker must see every announcement, so each worker process reads ``model-updates``
with its own consumer group (``<WORKER_APP_ID>-reload-<uuid>``, from the latest offset, no
commits) on a background thread; the labelling agent's consumer group is not involved. As a
safety net the thread also compares the registry's ``current`` pointer with what it serves
every ``MODEL_RELOAD_POLL_S`` seconds (a worker that started while a promotion was announced
would otherwise miss it).

Loading and verification (checksum, embedding model, dimension: :meth:`ModelRegistry.load`)
run on that thread, never on the event loop. A model that fails is refused: the old one keeps
serving, ``ticketflow_model_reloads_total{result="refused"}`` counts it and the reason is
logged. A verified model waits in :attr:`ModelReloader.pending` until the agent calls
:func:`swap_if_ready` before its next batch: batches are handled one at a time, so no ticket
is dropped or labelled twice by the swap, and ``model_version`` changes at a batch boundary.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ticketflow.models.embedding import Encoder
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel, ModelRegistry, ModelVerificationError
from ticketflow.models.serving import make_pipeline
from ticketflow.schemas import ModelUpdate
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.worker import BatchLabeler

logger = logging.getLogger(__name__)


@dataclass
class PreparedModel:
    model: LoadedModel
    pipeline: LabelingPipeline
    received_at: float  # time.monotonic() when the announcement (or poll) named it
    received_batch: int  # batches the agent had started by then
    source: str  # "announcement" | "registry"

    @property
    def version(self) -> str:
        return self.model.metadata.version


class ModelReloader:
    def __init__(
        self,
        *,
        registry: ModelRegistry,
        encoder: Encoder,
        serving_version: str,
        metrics: WorkerMetrics,
        consumer_config: dict[str, str] | None = None,
        topic: str | None = None,
        group_prefix: str = "ticketflow-worker",
        poll_s: float = 60.0,
    ) -> None:
        self.registry = registry
        self.encoder = encoder
        self.metrics = metrics
        self.consumer_config = consumer_config
        self.topic = topic
        self.group_id = f"{group_prefix}-reload-{uuid.uuid4().hex[:12]}"
        self.poll_s = poll_s
        self.serving = serving_version
        self.target = serving_version  # serving, or pending once one is loaded
        self.pending: PreparedModel | None = None
        self.refused: set[str] = set()
        self.batches = 0
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- event loop side ----------------------------------------------------------------------

    def note_batch(self) -> None:
        self.batches += 1

    def take(self) -> PreparedModel | None:
        with self._lock:
            prepared, self.pending = self.pending, None
            if prepared is not None:
                self.serving = prepared.version
            return prepared

    # --- background side ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ticketflow-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def prepare(self, version: str, *, expected_sha256: str | None, source: str) -> bool:
        """Load and verify ``version``; on success it becomes :attr:`pending`. Thread-safe."""
        received_at, received_batch = time.monotonic(), self.batches
        with self._lock:
            if version == self.target:
                return True
            if version == self.serving:  # e.g. rolled back before the swap happened
                self.pending, self.target = None, version
                return True
        try:
            model = self.registry.load(
                version,
                expect_embedding_model=self.encoder.name,
                expect_dimension=self.encoder.dimension,
            )
            if expected_sha256 and model.metadata.model_sha256 != expected_sha256:
                raise ModelVerificationError(
                    f"model {version}: announced sha256 {expected_sha256[:12]} is not the "
                    f"registry's {model.metadata.model_sha256[:12]}"
                )
            pipeline = make_pipeline(self.encoder, model)
        except Exception as exc:  # every failure is a refusal: the old model keeps serving
            self.metrics.model_reloads.labels(result="refused").inc()
            self.refused.add(version)
            logger.error(
                "model reload refused: %s (%s: %s); still serving %s",
                version,
                type(exc).__name__,
                exc,
                self.serving,
            )
            return False
        with self._lock:
            self.pending = PreparedModel(model, pipeline, received_at, received_batch, source)
            self.target = version
        self.metrics.model_reloads.labels(result="ok").inc()
        logger.info("model %s loaded and verified (%s); swap at the next batch", version, source)
        return True

    def handle_update(self, raw: bytes | None) -> None:
        try:
            update = ModelUpdate.model_validate_json(raw or b"")
        except ValidationError as exc:
            logger.warning("ignoring an invalid model update: %s", exc)
            return
        logger.info(
            "model update: %s %s -> %s by %s (%s)",
            update.action,
            update.previous_version,
            update.version,
            update.promoted_by,
            update.reason,
        )
        self.prepare(update.version, expected_sha256=update.model_sha256, source="announcement")

    def check_registry(self) -> None:
        current = self.registry.current_version()
        if current is None or current == self.target or current in self.refused:
            return
        self.prepare(current, expected_sha256=None, source="registry")

    def _run(self) -> None:
        consumer = self._consumer()
        next_check = time.monotonic() + self.poll_s
        try:
            while not self._stop.is_set():
                if consumer is not None:
                    message = consumer.poll(0.5)
                    if message is not None and message.error() is None:
                        self.handle_update(message.value())
                    elif message is not None:
                        logger.debug("model-updates consumer: %s", message.error())
                else:
                    self._stop.wait(0.5)
                if self.poll_s > 0 and time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.poll_s
                    try:
                        self.check_registry()
                    except Exception:
                        logger.exception("registry check failed")
        finally:
            if consumer is not None:
                consumer.close()

    def _consumer(self) -> Any:
        if self.consumer_config is None or self.topic is None:
            self.subscribed.set()
            return None
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                **self.consumer_config,
                "group.id": self.group_id,
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            }
        )

        def on_assign(_consumer: Any, _partitions: list[Any]) -> None:
            self.subscribed.set()
            # An announcement made while this worker was starting is not re-read (latest):
            # catch up with the registry pointer once the subscription stands.
            self.check_registry()

        consumer.subscribe([self.topic], on_assign=on_assign)
        return consumer


def swap_if_ready(labeler: BatchLabeler, reloader: ModelReloader, metrics: WorkerMetrics) -> bool:
    """Call between batches: put a verified pending model in service. True when swapped."""
    reloader.note_batch()
    prepared = reloader.take()
    if prepared is None:
        return False
    old = labeler.model_version
    labeler.pipeline = prepared.pipeline
    labeler.model_version = prepared.version
    metrics.set_model(
        prepared.version, prepared.pipeline.encoder.name, prepared.model.metadata.labels
    )
    delay = time.monotonic() - prepared.received_at
    metrics.model_swap_seconds.set(delay)
    logger.info(
        "hot swap %s -> %s at a batch boundary: %.2fs and %d batch(es) after the %s",
        old,
        prepared.version,
        delay,
        reloader.batches - prepared.received_batch,
        prepared.source,
    )
    return True
