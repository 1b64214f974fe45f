"""Input contract: one raw support ticket as a help desk publishes it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

_TAG_COLUMN = re.compile(r"^tag_(\d+)$")

# Deeply nested JSON is a cheap way to make a parser recurse; nothing legitimate nests this far.
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class FieldLimits:
    """Size limits applied while validating a ticket.

    Passed as pydantic validation context (``context={"limits": FieldLimits(...)}``) so the
    limits come from settings at the entry point while the schema stays a leaf module.
    """

    max_subject_chars: int = 1_000
    max_body_chars: int = 20_000
    max_tags: int = 50
    max_tag_chars: int = 100
    max_ticket_id_chars: int = 256


DEFAULT_LIMITS = FieldLimits()


def _limits(info: ValidationInfo) -> FieldLimits:
    context = info.context if isinstance(info.context, dict) else {}
    limits = context.get("limits", DEFAULT_LIMITS)
    return limits if isinstance(limits, FieldLimits) else DEFAULT_LIMITS


def fold_tag_columns(data: dict[str, Any]) -> dict[str, Any]:
    """Move dataset-style ``tag_1 … tag_n`` keys into the ``tags`` list (in numeric order).

    Empty values (None, "", NaN) are dropped; an existing ``tags`` list comes first.
    """
    numbered = sorted(
        ((int(m.group(1)), key) for key in data if (m := _TAG_COLUMN.match(key))),
    )
    if not numbered:
        return data
    folded = {k: v for k, v in data.items() if not _TAG_COLUMN.match(k)}
    existing = folded.get("tags") or []
    if not isinstance(existing, list | tuple):
        # Left for validation to refuse (a ValidationError, so a dead letter or a 422): list()
        # on it would raise TypeError, which escapes pydantic and failed the whole batch.
        return data
    tags = list(existing)
    for _, key in numbered:
        value = data[key]
        if value is None or (isinstance(value, float) and value != value):  # NaN from CSV readers
            continue
        if isinstance(value, str) and not value.strip():
            continue
        tags.append(value)
    folded["tags"] = tags
    return folded


class Ticket(BaseModel):
    """A support ticket event (topic ``tickets``). Unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    ticket_id: str = Field(description="Unique id of the ticket; the Kafka key and ChromaDB id.")
    subject: str | None = Field(
        default=None, description="Subject line; may be empty if body is set."
    )
    body: str | None = Field(
        default=None, description="Free-text body; may be empty if subject is set."
    )
    tags: list[str] = Field(
        default_factory=list, description="Tags; dataset columns tag_1..tag_n fold in."
    )
    priority: str | None = None
    language: str | None = None
    queue: str | None = None
    type: str | None = None
    created_at: datetime | None = Field(default=None, description="Event time (ISO 8601).")
    customer_id: str | None = None
    channel: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold_tags(cls, data: Any) -> Any:
        return fold_tag_columns(data) if isinstance(data, dict) else data

    @field_validator("ticket_id")
    @classmethod
    def _ticket_id(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            raise ValueError("ticket_id must not be empty")
        limit = _limits(info).max_ticket_id_chars
        if len(value) > limit:
            raise ValueError(f"ticket_id is longer than {limit} characters")
        return value

    @field_validator("subject", "body")
    @classmethod
    def _text_size(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        limits = _limits(info)
        limit = limits.max_subject_chars if info.field_name == "subject" else limits.max_body_chars
        if len(value) > limit:
            raise ValueError(f"{info.field_name} has {len(value)} characters, limit is {limit}")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str], info: ValidationInfo) -> list[str]:
        limits = _limits(info)
        if len(value) > limits.max_tags:
            raise ValueError(f"{len(value)} tags, limit is {limits.max_tags}")
        cleaned = []
        for tag in value:
            if len(tag) > limits.max_tag_chars:
                raise ValueError(
                    f"a tag has {len(tag)} characters, limit is {limits.max_tag_chars}"
                )
            tag = tag.strip()
            if tag and tag not in cleaned:
                cleaned.append(tag)
        return cleaned

    @model_validator(mode="after")
    def _has_text(self) -> Ticket:
        if not (self.subject or "").strip() and not (self.body or "").strip():
            raise ValueError("subject and body are both empty")
        return self

    @property
    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# A \ud800 escape in JSON decodes to a lone surrogate, which strict UTF-8 cannot hold: the
# tokenizers and ChromaDB fail on it deep inside, so decoders refuse it up front.
SURROGATE = re.compile(r"[\ud800-\udfff]")


def lone_surrogate(value: Any) -> str | None:
    """The first lone UTF-16 surrogate in any string (key or value) of a JSON value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if match := SURROGATE.search(item):
                return match.group()
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def json_depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests (objects and arrays), counted up to just past ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def validation_reason(error: ValidationError) -> str:
    """A ticket's validation errors in one readable line (the first five)."""
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "ticket"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
