"""Promote / roll back a registered model and announce it on ``model-updates``."""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from datetime import datetime

from ticketflow.adapters.kafka.clients import consume, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.models.registry import ModelRegistry, PromotionRecord, RegistryError
from ticketflow.schemas import DriftEvent, ModelUpdate

logger = logging.getLogger(__name__)

Announce = Callable[[ModelUpdate], None]


def model_update(registry: ModelRegistry, entry: PromotionRecord) -> ModelUpdate:
    metadata = registry.metadata(entry.version)
    return ModelUpdate(
        version=entry.version,
        previous_version=entry.previous,
        action="rollback" if entry.action == "rollback" else "promote",
        reason=entry.reason,
        promoted_by=entry.by,
        promoted_at=entry.at,
        model_sha256=metadata.model_sha256,
        embedding_model=metadata.embedding_model,
        embedding_dimension=metadata.embedding_dimension,
    )


def promote(
    registry: ModelRegistry,
    version: str,
    *,
    by: str,
    reason: str,
    announce: Announce | None,
    forced: bool = False,
    report: str | None = None,
) -> ModelUpdate:
    """Verify, make current, append to the history, then announce (pointer first: a worker
    that misses the announcement still finds the new model by polling the pointer)."""
    entry = registry.promote(version, by=by, reason=reason, forced=forced, report=report)
    update = model_update(registry, entry)
    if announce is not None:
        announce(update)
    logger.info("promoted %s (was %s): %s", version, entry.previous, reason)
    return update


def rollback(
    registry: ModelRegistry, *, by: str, reason: str, announce: Announce | None
) -> ModelUpdate:
    target = registry.previous_champion()
    if target is None:
        raise RegistryError(
            "no previous champion to roll back to (the history has none before the current one)"
        )
    entry = registry.promote(target, by=by, reason=reason, action="rollback")
    update = model_update(registry, entry)
    if announce is not None:
        announce(update)
    logger.info("rolled back %s -> %s: %s", entry.previous, target, reason)
    return update


def kafka_announcer(client_config: dict[str, str], topic: str, *, replication: int) -> Announce:
    """Publish each ModelUpdate on ``topic`` (one partition: read in order) and wait for the
    broker's ack."""

    def announce(update: ModelUpdate) -> None:
        create_topics(client_config, [topic], partitions=1, replication=replication)
        produce_raw(
            client_config,
            topic,
            [(update.version.encode("utf-8"), update.model_dump_json().encode("utf-8"))],
        )

    return announce


def last_promotion(registry: ModelRegistry) -> datetime | None:
    """When the current model became current (its registration time if never promoted)."""
    current = registry.current_version()
    if current is None:
        return None
    for entry in reversed(registry.history()):
        if entry.version == current:
            return entry.at
    return registry.metadata(current).created_at


def drift_since(
    client_config: dict[str, str], topic: str, since: datetime, *, timeout_s: float = 5.0
) -> list[DriftEvent]:
    """Drift events detected after ``since`` (read from the start of the drift topic)."""
    events = []
    for record in consume(client_config, topic, max_messages=None, timeout_s=timeout_s):
        try:
            event = DriftEvent.model_validate(record)
        except ValueError:
            continue
        if event.detected_at > since:
            events.append(event)
    return events


def who(name: str | None) -> str:
    """Who is recorded as promoting: ``name``, else the operating-system user."""
    return name or getpass.getuser()
