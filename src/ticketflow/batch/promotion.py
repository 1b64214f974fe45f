"""Promote / roll back a registered model and announce it on ``model-updates``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ticketflow.models.registry import ModelRegistry, PromotionRecord, RegistryError
from ticketflow.schemas import ModelUpdate

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
