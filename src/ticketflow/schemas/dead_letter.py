"""Dead-letter contract: an event the worker could not label, with the reason."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class DeadLetterReason(StrEnum):
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    VALIDATION_ERROR = "validation_error"
    MESSAGE_TOO_LARGE = "message_too_large"
    PROCESSING_ERROR = "processing_error"
    UNKNOWN_TICKET = "unknown_ticket"  # feedback for a ticket id the vector store does not hold


class DeadLetter(BaseModel):
    """Published to ``tickets-dlq``; the original payload is kept so it can be replayed."""

    original: str = Field(description="The original bytes: text when valid UTF-8, else base64.")
    original_encoding: Literal["utf-8", "base64"]
    original_size: int = Field(description="Size of the original payload in bytes.")
    original_truncated: bool = Field(
        default=False, description="True when only the first bytes of a huge payload are kept."
    )
    original_key: str | None = Field(
        default=None, description="The Kafka key of the original event (UTF-8, lossy)."
    )
    ticket_id: str | None = Field(
        default=None, description="Best-effort id, when one was readable."
    )
    error_type: DeadLetterReason
    reason: str = Field(description="Human-readable explanation.")
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: datetime

    @staticmethod
    def encode_original(
        raw: bytes, keep_bytes: int
    ) -> tuple[str, Literal["utf-8", "base64"], bool]:
        """Return (text, encoding, truncated) for a payload, keeping at most ``keep_bytes``."""
        truncated = len(raw) > keep_bytes
        kept = raw[:keep_bytes]
        try:
            text = raw.decode("utf-8") if not truncated else kept.decode("utf-8", errors="ignore")
            return text, "utf-8", truncated
        except UnicodeDecodeError:
            return base64.b64encode(kept).decode("ascii"), "base64", truncated
