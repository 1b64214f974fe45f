"""Output contract: the prediction published to ``labeled-tickets``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class LabelScore(BaseModel):
    label: str
    probability: float = Field(ge=0.0, le=1.0)


class TargetPrediction(BaseModel):
    """The prediction for one target (e.g. ``queue``)."""

    label: str
    probability: float = Field(ge=0.0, le=1.0, description="Probability of the predicted label.")
    top: list[LabelScore] = Field(description="The three most probable labels, best first.")


class SourcePosition(BaseModel):
    topic: str
    partition: int
    offset: int


class LabeledTicket(BaseModel):
    """One classified ticket (key = ticket_id)."""

    ticket_id: str
    predictions: dict[str, TargetPrediction] = Field(
        description="Per trained target (queue, type, priority, ...)."
    )
    needs_review: bool = Field(
        description="True when any target's probability is below the review threshold."
    )
    model_version: str
    embedding_model: str
    event_time: datetime | None = Field(description="The ticket's created_at, when it had one.")
    processed_time: datetime
    source: SourcePosition
