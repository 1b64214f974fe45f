"""The worker's side of hot reload: follow promotions (:mod:`ticketflow.runtime.reload`) and
swap a verified model in between two batches.

Batches are handled one at a time from the agent's point of view, so no ticket is dropped or
labelled twice by the swap, and ``model_version`` changes at a batch boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ticketflow.config import Settings
from ticketflow.runtime.loading import Runtime
from ticketflow.runtime.reload import Announcements, ModelReloader
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.worker import BatchLabeler

logger = logging.getLogger(__name__)


def start_reloader(settings: Settings, runtime: Runtime, metrics: WorkerMetrics) -> ModelReloader:
    """Follow ``model-updates`` and the registry's pointer; refusals and loads are counted in
    ``ticketflow_model_reloads_total``."""
    reloader = ModelReloader(
        registry=runtime.registry,
        encoder=runtime.encoders,
        serving_version=runtime.model_version,
        announcements=Announcements(
            consumer_config=settings.kafka_client_config(),
            topic=settings.kafka_topic_model_updates,
            group_prefix=settings.worker_app_id,
        ),
        poll_s=settings.model_reload_poll_s,
        on_result=counted(metrics),
    )
    reloader.start()
    return reloader


def counted(metrics: WorkerMetrics) -> Callable[[str], None]:
    """Count a reload's result (ok, refused) in the worker's metrics."""

    def count(result: str) -> None:
        metrics.model_reloads.labels(result=result).inc()

    return count


def swap_if_ready(labeler: BatchLabeler, reloader: ModelReloader, metrics: WorkerMetrics) -> bool:
    """Call between batches: put a verified pending model in service. True when swapped."""
    reloader.note_boundary()
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
