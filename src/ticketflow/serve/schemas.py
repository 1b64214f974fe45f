"""What the HTTP API takes and answers, as the OpenAPI document declares it.

Request bodies are read as raw bytes and decoded by the stream's own decoder (so a refusal
carries the dead letter's reason); the JSON Schemas here only *describe* them, built from the
same limits, so a client generated from the document sends what the service accepts and
nothing it refuses (``schemathesis`` checks both directions, tests/serve/test_contract.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ticketflow.schemas import FieldLimits, TargetPrediction
from ticketflow.schemas.store import LabelSource

# Exactly what Python's ``str.isspace`` (and so ``str.strip``) calls whitespace, spelled out
# because ``\s`` means less in the ECMA regexes a client validates with (tests check the set).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_BLANK = f"[{WHITESPACE}]"
_SOLID = f"[^{WHITESPACE}]"
NOT_BLANK = _SOLID  # somewhere in the string, a character that is not whitespace

TICKET_EXAMPLE: dict[str, Any] = {
    "ticket_id": "T-1001",
    "subject": "Refund not received",
    "body": "I returned the order two weeks ago and still have no refund.",
    "tags": ["billing"],
    "created_at": "2026-01-31T09:30:00Z",
}


def stripped_at_most(chars: int) -> str:
    """A pattern for a string that is not blank and has at most ``chars`` characters once
    stripped (the ticket id's rule, ``Ticket._ticket_id``)."""
    inner = f"(?:[\\s\\S]{{0,{chars - 2}}}{_SOLID})?" if chars > 1 else ""
    return f"^{_BLANK}*{_SOLID}{inner}{_BLANK}*$"


def _ticket_properties(limits: FieldLimits) -> dict[str, Any]:
    text = {"type": ["string", "null"]}
    return {
        "ticket_id": {
            "type": "string",
            "pattern": stripped_at_most(limits.max_ticket_id_chars),
            "description": "Unique id of the ticket (surrounding spaces are dropped).",
        },
        "subject": {
            **text,
            "maxLength": limits.max_subject_chars,
            "description": "Subject line; may be empty if body is set.",
        },
        "body": {
            **text,
            "maxLength": limits.max_body_chars,
            "description": "Free-text body; may be empty if subject is set.",
        },
        "tags": {
            "type": "array",
            "maxItems": limits.max_tags,
            "items": {"type": "string", "maxLength": limits.max_tag_chars},
        },
        "priority": text,
        "language": text,
        "queue": text,
        "type": text,
        "created_at": {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
            "description": "Event time (ISO 8601).",
        },
        "customer_id": text,
        "channel": text,
    }


def _has_text() -> list[dict[str, Any]]:
    return [
        {"required": [name], "properties": {name: {"type": "string", "pattern": NOT_BLANK}}}
        for name in ("subject", "body")
    ]


def _tag_columns(limits: FieldLimits) -> dict[str, Any]:
    # Dataset-style tag_1..tag_n keys fold into ``tags`` (``fold_tag_columns``).
    return {"^tag_[0-9]+$": {"type": ["string", "null"], "maxLength": limits.max_tag_chars}}


def ticket_schema(limits: FieldLimits) -> dict[str, Any]:
    """One ticket of the ``tickets`` topic's schema, with the service's limits."""
    return {
        "title": "TicketIn",
        "type": "object",
        "description": "A support ticket. Subject or body must hold text; other fields are "
        "kept. Refusals answer 422 with the dead letter's `error_type` and `reason`.",
        "required": ["ticket_id"],
        "properties": _ticket_properties(limits),
        "patternProperties": _tag_columns(limits),
        "anyOf": _has_text(),
        "example": TICKET_EXAMPLE,
    }


def classify_schema(max_tickets: int) -> dict[str, Any]:
    return {
        "title": "ClassifyRequest",
        "description": f"One ticket, or a list of at most {max_tickets}.",
        "anyOf": [
            {"$ref": "#/components/schemas/TicketIn"},
            {
                "type": "array",
                "maxItems": max_tickets,
                "items": {"$ref": "#/components/schemas/TicketIn"},
            },
        ],
    }


def similar_schema(limits: FieldLimits, targets: Sequence[str], max_k: int) -> dict[str, Any]:
    """A stored ticket's id alone, or a new ticket's fields (its id optional), plus options."""
    options = {
        "k": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 5},
        "where": {
            "type": ["object", "null"],
            "description": "Only tickets whose current label is this, per target "
            f"(the served model's: {', '.join(targets)}).",
            "propertyNames": {"enum": list(targets)},
            "additionalProperties": {"type": "string"},
        },
    }
    by_id = {
        "title": "SimilarToStored",
        "type": "object",
        "required": ["ticket_id"],
        "properties": {"ticket_id": {"type": "string", "pattern": NOT_BLANK}, **options},
        "additionalProperties": False,
    }
    by_text = {
        "title": "SimilarToText",
        "type": "object",
        "properties": {**_ticket_properties(limits), **options},
        "patternProperties": _tag_columns(limits),
        "anyOf": _has_text(),
    }
    return {
        "title": "SimilarRequest",
        "description": "A stored ticket's `ticket_id` alone (404 if not stored), or a "
        "ticket's fields; with a `ticket_id`, that stored ticket is left out of the answer.",
        "anyOf": [by_id, by_text],
    }


class ErrorDetail(BaseModel):
    error_type: str = Field(
        description="The dead letter's reason for refused input (`validation_error`, "
        "`invalid_json`, `not_utf8`, `not_an_object`, `message_too_large`), else "
        "`unauthorized`, `forbidden`, `overloaded` or `store_unavailable`.",
        examples=["validation_error"],
    )
    reason: str = Field(examples=["subject and body are both empty"])
    index: int | None = Field(
        default=None, description="The refused ticket's place in a list (classify)."
    )
    ticket_id: str | None = Field(default=None, description="The refused ticket's id, if read.")


class ErrorBody(BaseModel):
    """Every error the service itself answers (not the framework's 404/405 for unknown
    paths and methods)."""

    detail: ErrorDetail


class ClassifiedTicket(BaseModel):
    """The fields of the ticket's ``labeled-tickets`` record, without its source position
    and the worker's similarity fields."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "ticket_id": "T-1001",
                "predictions": {
                    "queue": {
                        "label": "Billing",
                        "probability": 0.93,
                        "top": [
                            {"label": "Billing", "probability": 0.93},
                            {"label": "Returns", "probability": 0.05},
                        ],
                        "needs_review": False,
                        "review_threshold": 0.61,
                    }
                },
                "needs_review": False,
                "review_gate": ["queue"],
                "model_version": "20260131T093000-1a2b3c",
                "embedding_model": "all-MiniLM-L6-v2",
                "event_time": "2026-01-31T09:30:00+00:00",
                "processed_time": "2026-01-31T09:30:01.120000+00:00",
            }
        }
    )

    ticket_id: str
    predictions: dict[str, TargetPrediction]
    needs_review: bool
    review_gate: list[str]
    model_version: str
    embedding_model: str
    event_time: str | None = Field(description="The ticket's created_at (ISO 8601), if any.")
    processed_time: str = Field(description="When it was classified (ISO 8601).")


class SimilarTicketOut(BaseModel):
    ticket_id: str
    distance: float = Field(description="Cosine distance to the query (0 = same vector).")
    labels: dict[str, str] = Field(description="The stored ticket's current label per target.")
    label_source: LabelSource
    subject: str | None = Field(
        default=None,
        description="The stored text's first line; only when the store keeps text "
        "(CHROMA_DOCUMENT). Plain text written by customers: escape it before display.",
    )


class SimilarAnswer(BaseModel):
    results: list[SimilarTicketOut] = Field(description="Nearest first.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    model_version: str
    stored: int = Field(description="Tickets in the vector store.")


class NotReady(BaseModel):
    status: str = Field(examples=["unavailable"])
    reason: str


class LabelOut(BaseModel):
    label: str
    probability: float


class HeldTarget(BaseModel):
    label: str = Field(description="The model's label.")
    probability: float
    top: list[LabelOut] = Field(description="The model's most probable labels, best first.")
    unsure: bool = Field(description="Below this target's review cut: a person should check it.")


class IncidentOut(BaseModel):
    incident_id: str = Field(description="Its key on `ticket-incidents`.")
    status: str | None = Field(
        description="open, updated or closed; null when the desk has not read the incident "
        "(INCIDENTS_ENABLED off on serve, or the topic not read yet)."
    )
    size: int | None = Field(description="Members (null as for `status`).")
    top_terms: list[str] = Field(description="The terms that tell it apart, best first (5).")


class HeldTicketOut(BaseModel):
    ticket_id: str
    processed_at: str = Field(description="When the worker labelled it (ISO 8601).")
    model_version: str
    margin: float = Field(
        description="Top-1 minus top-2 probability of the review gate (smallest first)."
    )
    predictions: dict[str, HeldTarget]
    text: str | None = Field(
        default=None,
        description="The stored text (CHROMA_DOCUMENT); null when the store keeps none. Plain "
        "text written by customers: escape it before display.",
    )
    tags: list[str]
    similar: list[SimilarTicketOut] = Field(
        description="The nearest stored tickets; `label_source` says whether a person set them."
    )
    incident: IncidentOut | None = Field(
        default=None,
        description="The emerging incident (docs/incidents.md) the ticket belongs to, if any.",
    )


class ReviewAnswer(BaseModel):
    tickets: list[HeldTicketOut] = Field(description="In the asked order.")
    total: int = Field(description="Held tickets matching the filters.")
    counts: dict[str, int] = Field(description="Held tickets per unsure target (whole queue).")
    refreshed_at: str = Field(description="When the queue was read from the store (ISO 8601).")


class FeedbackIn(BaseModel):
    """A person's labels for a stored ticket; published as a `LabelFeedback` with
    `corrected_by` = the caller's token name."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"ticket_id": "T-1001", "labels": {"queue": "Billing"}, "comment": None}
        },
    )

    ticket_id: str = Field(min_length=1, max_length=256)
    labels: dict[str, str] = Field(
        min_length=1,
        max_length=16,
        description="Label per target: a known class, or a new one (plain text, at most 200 "
        "characters, not a known class spelt differently).",
    )
    comment: str | None = Field(default=None, max_length=2_000)


class FeedbackAccepted(BaseModel):
    ticket_id: str
    labels: dict[str, str]
    corrected_by: str
    topic: str = Field(description="Where it was published (`ticket-feedback`).")


def describe_review(document: dict[str, Any], targets: Sequence[str]) -> None:
    """Make the review routes' schemas as strict as the handlers: a target is one of the served
    model's, a label is plain text (``review.answers``) of at most 200 characters."""
    from ticketflow.review.answers import HIDDEN, MAX_LABEL_CHARS

    names = list(targets)
    for parameter in document["paths"]["/v1/review"]["get"]["parameters"]:
        if parameter["name"] == "target":
            parameter["schema"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]}
    schema = document["components"]["schemas"]["FeedbackIn"]
    text = f"[^{HIDDEN}]"
    schema["properties"]["ticket_id"]["pattern"] = NOT_BLANK
    schema["properties"]["labels"]["propertyNames"] = {"enum": names}
    schema["properties"]["labels"]["maxProperties"] = len(names)
    schema["properties"]["labels"]["additionalProperties"] = {
        "type": "string",
        "maxLength": MAX_LABEL_CHARS,
        "pattern": f"^{text}*{_SOLID.replace('[^', '[^' + HIDDEN, 1)}{text}*$",
    }
