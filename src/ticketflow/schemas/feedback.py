"""Contract of the ``ticket-feedback`` topic: an agent's corrected labels for one ticket."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field, field_validator


class LabelFeedback(BaseModel):
    """Published by ``ticketflow feedback`` (or a help-desk integration), keyed by ticket id."""

    model_config = {"extra": "forbid"}

    ticket_id: str = Field(min_length=1, max_length=256)
    labels: dict[str, str] = Field(
        min_length=1,
        max_length=16,
        description="Corrected label per target, e.g. {'queue': 'Billing and Payments'}.",
    )
    corrected_by: str = Field(min_length=1, max_length=256, description="Who corrected it.")
    corrected_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    comment: str | None = Field(default=None, max_length=2_000)

    @field_validator("ticket_id", "corrected_by")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for target, label in value.items():
            if not target.strip() or not target.isidentifier():
                raise ValueError(f"target {target!r} is not a plain name")
            if not label.strip() or len(label) > 200:
                raise ValueError(f"label of {target!r} must be 1-200 characters")
        return value
