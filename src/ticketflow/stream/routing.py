"""Decode raw Kafka values into tickets, or into dead letters with the reason. Pure functions."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from ticketflow.schemas import DeadLetter, DeadLetterReason, FieldLimits, SourcePosition, Ticket
from ticketflow.schemas.ticket import (
    MAX_JSON_DEPTH,
    json_depth,
    lone_surrogate,
    validation_reason,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int

    def source(self) -> SourcePosition:
        """This position as a labelled ticket's ``source``."""
        return SourcePosition(topic=self.topic, partition=self.partition, offset=self.offset)


@dataclass(frozen=True)
class Rejected:
    """Why an event could not become a ticket."""

    error_type: DeadLetterReason
    reason: str
    ticket_id: str | None = None


def decode_ticket(raw: bytes | None, *, limits: FieldLimits, max_bytes: int) -> Ticket | Rejected:
    """Turn one raw event into a :class:`Ticket` or a :class:`Rejected` with a readable reason."""
    if raw is None:
        return Rejected(DeadLetterReason.INVALID_JSON, "empty message (null value)")
    if len(raw) > max_bytes:
        return Rejected(
            DeadLetterReason.MESSAGE_TOO_LARGE,
            f"message has {len(raw)} bytes, limit is {max_bytes}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(DeadLetterReason.NOT_UTF8, f"value is not valid UTF-8: {exc}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError, not only JSONDecodeError: a number of more than 4,300 digits is valid
        # JSON that Python's int() refuses (CVE-2020-10735's limit).
        return Rejected(DeadLetterReason.INVALID_JSON, f"invalid JSON: {exc}")
    if "\\u" in text and (found := lone_surrogate(data)) is not None:
        return Rejected(
            DeadLetterReason.NOT_UTF8,
            f"value is not valid Unicode: lone surrogate {found!r} (from a \\u escape)",
        )
    if not isinstance(data, dict):
        return Rejected(
            DeadLetterReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
        )
    ticket_id = data.get("ticket_id")
    readable_id = ticket_id if isinstance(ticket_id, str) and ticket_id.strip() else None
    if json_depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return Rejected(
            DeadLetterReason.VALIDATION_ERROR,
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
            readable_id,
        )
    try:
        return Ticket.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        return Rejected(DeadLetterReason.VALIDATION_ERROR, validation_reason(exc), readable_id)


def dead_letter(
    raw: bytes | None,
    rejected: Rejected,
    position: Position,
    *,
    keep_bytes: int,
    key: bytes | None = None,
) -> DeadLetter:
    payload = raw or b""
    original, encoding, truncated = DeadLetter.encode_original(payload, keep_bytes)
    return DeadLetter(
        original=original,
        original_encoding=encoding,
        original_size=len(payload),
        original_truncated=truncated,
        original_key=key.decode("utf-8", errors="replace")[:1_000] if key is not None else None,
        ticket_id=rejected.ticket_id,
        error_type=rejected.error_type,
        reason=rejected.reason,
        source_topic=position.topic,
        source_partition=position.partition,
        source_offset=position.offset,
        failed_at=datetime.now(UTC),
    )
