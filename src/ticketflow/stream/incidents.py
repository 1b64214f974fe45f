"""The worker's incident detector at start: its baseline from the store's history, and the
open incidents restored from the compacted ``ticket-incidents`` topic.

A restart must neither lose an open incident (its next members would open a second one)
nor duplicate it: the last event per incident id says which are open, and their members'
vectors come back from the store, so new tickets join them under the same id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from ticketflow.adapters.kafka.dlq import TopicNotFoundError, read_topic
from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.config import Settings
from ticketflow.monitoring.incidents import Baseline, IncidentConfig, IncidentDetector, Vector
from ticketflow.schemas import IncidentEvent

logger = logging.getLogger(__name__)


def incident_config(settings: Settings) -> IncidentConfig:
    """The INCIDENT_* settings as the detector takes them."""
    return IncidentConfig(
        window_s=settings.incident_window_s,
        min_size=settings.incident_min_size,
        max_distance=settings.incident_max_distance,
        quiet_s=settings.incident_quiet_s,
        baseline_ratio=settings.incident_baseline_ratio,
    )


def store_baseline(store: ChromaVectorStore, size: int) -> Baseline:
    """A baseline seeded with up to ``size`` stored tickets; their rate from the span of
    their ``processed_at`` (the store keeps no event time)."""
    baseline = Baseline(size)
    page = next(iter(store.pages(size, vectors=True)), [])
    vectors = [r.vector for r in page if r.vector is not None]
    times = [float(r.metadata["processed_at"]) for r in page if "processed_at" in r.metadata]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    baseline.seed(vectors, span)
    return baseline


def restore(
    detector: IncidentDetector,
    client_config: Mapping[str, Any],
    topic: str,
    store: ChromaVectorStore,
) -> int:
    """Reopen the incidents the topic holds as open; returns how many."""
    events: list[IncidentEvent] = []
    try:
        for record in read_topic(client_config, topic):
            if record.value is None:
                continue
            try:
                events.append(IncidentEvent.model_validate_json(record.value))
            except ValidationError:
                logger.warning("unreadable record at %s:%d left out", topic, record.offset)
    except TopicNotFoundError:
        logger.info("no topic %s yet: no incident to restore", topic)
        return 0
    last = {e.incident_id: e for e in events}
    members = [m for e in last.values() if e.status != "closed" for m in e.member_ticket_ids]
    records = store.records(members, vectors=True) if members else {}
    vectors: dict[str, Vector] = {
        ticket_id: np.asarray(r.vector, dtype=np.float32)
        for ticket_id, r in records.items()
        if r.vector is not None
    }
    restored = detector.restore(events, vectors)
    logger.info("restored %d open incidents from %s", restored, topic)
    return restored
