"""Hot reload: load a promoted model in the background, hand it over at the caller's boundary.

One reloader serves the worker and ``ticketflow serve``. It learns of a new model two ways:
- announcements on ``model-updates`` (the worker): every process must see every one, so it
  reads the topic with its own consumer group (``<prefix>-reload-<uuid>``, from the latest
  offset, no commits) on a background thread; the labelling agent's group is not involved;
- the registry's ``current`` pointer, compared with what is served every ``poll_s`` seconds
  (both; for the worker a safety net: one that started while a promotion was announced would
  otherwise miss it).

Loading and verification (checksum, embedding model, dimension: :meth:`ModelRegistry.load`,
and :func:`~ticketflow.models.serving.make_pipeline`, which refuses a model of another vector
space) run on that thread, never on the event loop or a request. A model that fails is
refused: the old one keeps serving, ``on_result("refused")`` counts it and the reason is
logged. A verified model is handed over by ``on_ready`` when one is given (serve swaps it in
under a lock, so a request runs on one model from start to end), else it waits in
:attr:`ModelReloader.pending` until the caller :meth:`~ModelReloader.take`\\s it (the worker,
between two batches, so no ticket is dropped or labelled twice by the swap).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ticketflow.adapters.kafka.clients import latest_consumer
from ticketflow.models.embedding import Encoder
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel, ModelRegistry, ModelVerificationError
from ticketflow.models.serving import make_pipeline
from ticketflow.schemas import ModelUpdate

logger = logging.getLogger(__name__)


@dataclass
class PreparedModel:
    """A loaded, verified model waiting to be put in service."""

    model: LoadedModel
    pipeline: LabelingPipeline
    received_at: float  # time.monotonic() when the announcement (or poll) named it
    received_batch: int  # boundaries the caller had passed by then (:meth:`note_boundary`)
    source: str  # "announcement" | "registry"

    @property
    def version(self) -> str:
        return self.model.metadata.version


@dataclass(frozen=True)
class Announcements:
    """Where promotions are announced: the client config (security included), the topic and
    the prefix of this process's own consumer group."""

    consumer_config: Mapping[str, str]
    topic: str
    group_prefix: str = "ticketflow-worker"


def _ignore(_result: str) -> None:
    return None


class ModelReloader:
    """Follows promotions for one process; see the module docstring."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        encoder: Encoder,
        serving_version: str,
        announcements: Announcements | None = None,
        poll_s: float = 60.0,
        on_result: Callable[[str], None] = _ignore,
        on_ready: Callable[[PreparedModel], None] | None = None,
    ) -> None:
        self.registry = registry
        self.encoder = encoder
        self.announcements = announcements
        prefix = announcements.group_prefix if announcements else "ticketflow"
        self.group_id = f"{prefix}-reload-{uuid.uuid4().hex[:12]}"
        self.poll_s = poll_s
        self.on_result = on_result
        self.on_ready = on_ready
        self.serving = serving_version
        self.target = serving_version  # serving, or pending once one is loaded
        self.pending: PreparedModel | None = None
        self.refused: set[str] = set()
        self.batches = 0
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the caller's side --------------------------------------------------------------------

    def note_boundary(self) -> None:
        """The caller passed a boundary (the worker: started a batch)."""
        self.batches += 1

    def take(self) -> PreparedModel | None:
        """The pending model, if any; from now on it is the one served."""
        with self._lock:
            prepared, self.pending = self.pending, None
            if prepared is not None:
                self.serving = prepared.version
            return prepared

    # --- background side ----------------------------------------------------------------------

    def start(self) -> None:
        if self.announcements is None and self.poll_s <= 0:
            self.subscribed.set()
            return  # nothing to follow
        self._thread = threading.Thread(target=self._run, name="ticketflow-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def prepare(self, version: str, *, expected_sha256: str | None, source: str) -> bool:
        """Load and verify ``version``; on success it is handed over (``on_ready``) or becomes
        :attr:`pending`. True when ``version`` is (or will be) served. Thread-safe."""
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
            self.on_result("refused")
            self.refused.add(version)
            logger.error(
                "model reload refused: %s (%s: %s); still serving %s",
                version,
                type(exc).__name__,
                exc,
                self.serving,
            )
            return False
        prepared = PreparedModel(model, pipeline, received_at, received_batch, source)
        with self._lock:
            self.pending = prepared
            self.target = version
        if self.on_ready is not None:
            old = self.serving
            self.on_ready(self.take() or prepared)
            self.on_result("ok")
            logger.info("hot swap %s -> %s (%s)", old, version, source)
        else:
            self.on_result("ok")
            logger.info(
                "model %s loaded and verified (%s); swap at the next batch", version, source
            )
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

    def check_registry(self) -> bool:
        """Load the registry's current model when it is new and not refused before; True
        when one was loaded."""
        current = self.registry.current_version()
        if current is None or current == self.target or current in self.refused:
            return False
        return self.prepare(current, expected_sha256=None, source="registry")

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
                    self._stop.wait(min(0.5, self.poll_s) if self.poll_s > 0 else 0.5)
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
        if self.announcements is None:
            self.subscribed.set()
            return None

        def on_assign() -> None:
            self.subscribed.set()
            # An announcement made while this process was starting is not re-read (latest):
            # catch up with the registry pointer once the subscription stands.
            self.check_registry()

        return latest_consumer(
            self.announcements.consumer_config,
            self.announcements.topic,
            group_id=self.group_id,
            on_assign=on_assign,
        )
