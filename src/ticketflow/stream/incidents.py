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
from ticketflow.monitoring.incidents import IncidentConfig, IncidentDetector, Vector
from ticketflow.schemas import IncidentEvent

logger = logging.getLogger(__name__)

# INCIDENT_MAX_DISTANCE when INCIDENT_TEXT_WEIGHT is set and the distance is not: the joined
# space's (12.5% of the history within it of a ticket against 8.6% at 0.3 in the static
# space alone; bench.incidents at weight 0.3, 2026-12-07, docs/incidents.md).
JOINED_MAX_DISTANCE = 0.52


def incident_config(settings: Settings) -> IncidentConfig:
    """The INCIDENT_* settings as the detector takes them."""
    text_weight = settings.incident_text_weight
    if text_weight > 0 and settings.chroma_document == "none":
        # The words' part needs the history's texts (and, after a restart, the open
        # incidents' members'): without them the baseline would be in another space.
        logger.warning(
            "INCIDENT_TEXT_WEIGHT=%s needs the store's texts; CHROMA_DOCUMENT=none keeps none: "
            "incidents compare the stored vectors alone",
            text_weight,
        )
        text_weight = 0.0
    max_distance = settings.incident_max_distance
    if text_weight > 0 and "incident_max_distance" not in settings.model_fields_set:
        # The default distance is the vectors' own; the joined space has its own.
        max_distance = JOINED_MAX_DISTANCE
    return IncidentConfig(
        window_s=settings.incident_window_s,
        min_size=settings.incident_min_size,
        max_distance=max_distance,
        quiet_s=settings.incident_quiet_s,
        baseline_ratio=settings.incident_baseline_ratio,
        text_weight=text_weight,
    )


def seed_history(detector: IncidentDetector, store: ChromaVectorStore) -> int:
    """Seed the detector's baseline (and its words' weights) with up to ``baseline_sample``
    stored tickets and their stored texts; their rate from the span of their
    ``processed_at`` (the store keeps no event time). Returns how many."""
    size = detector.config.baseline_sample
    page = next(iter(store.pages(size, vectors=True, documents=True)), [])
    kept = [r for r in page if r.vector is not None]
    times = [float(r.metadata["processed_at"]) for r in page if "processed_at" in r.metadata]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    if span < detector.config.window_s:
        # Tickets labelled within less than one window (a young store, a few batches) give
        # no usual rate: the processing time of a batch or two would make hundreds of close
        # tickets "usual" and keep every burst, a restored incident's joiners too, below the
        # ratio. Without a rate only the minimum size counts until the window fills.
        span = 0.0
    detector.seed(
        [np.asarray(r.vector, dtype=np.float32) for r in kept],
        [r.document or "" for r in kept],
        span,
    )
    return len(kept)


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
    records = store.records(members, vectors=True, documents=True) if members else {}
    vectors: dict[str, Vector] = {
        ticket_id: np.asarray(r.vector, dtype=np.float32)
        for ticket_id, r in records.items()
        if r.vector is not None
    }
    texts = {ticket_id: r.document or "" for ticket_id, r in records.items()}
    restored = detector.restore(events, vectors, texts)
    logger.info("restored %d open incidents from %s", restored, topic)
    return restored
