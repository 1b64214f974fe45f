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
    needs_review: bool = Field(
        description="True when `probability` is below `review_threshold`: a person should "
        "check this target's label. Set per target, whether or not the target gates the "
        "ticket's top-level `needs_review`."
    )
    review_threshold: float = Field(
        ge=0.0,
        description="The cut `probability` was compared with: the model's own for this "
        "target (chosen on out-of-fold predictions for REVIEW_PRECISION, or this target's "
        "REVIEW_PRECISION_BY_TARGET), else REVIEW_THRESHOLD. Above 1 when no cut reached the "
        "precision: every ticket is reviewed for this target.",
    )


class SourcePosition(BaseModel):
    topic: str
    partition: int
    offset: int


class SimilarTicketRef(BaseModel):
    """A stored ticket near this one (``SIMILAR_K``)."""

    ticket_id: str
    distance: float = Field(
        ge=0.0, description="Cosine distance between the two tickets' stored vectors (0 = same)."
    )


class LabeledTicket(BaseModel):
    """One classified ticket (key = ticket_id)."""

    ticket_id: str
    predictions: dict[str, TargetPrediction] = Field(
        description="Per trained target (queue, type, priority, ...)."
    )
    needs_review: bool = Field(
        description="True when a target in `review_gate` needs review (its prediction's "
        "`needs_review`): the ticket is held for a person instead of being routed "
        "automatically. Targets outside the gate never hold the ticket; their own "
        "`needs_review` asks for that label to be checked. Also true for an `audit` ticket."
    )
    review_gate: list[str] = Field(
        description="The targets whose review sets `needs_review`: the model's gate "
        "(REVIEW_GATE when it was trained; by default its first target, the one tickets are "
        "routed by)."
    )
    model_version: str
    embedding_model: str
    event_time: datetime | None = Field(description="The ticket's created_at, when it had one.")
    processed_time: datetime
    source: SourcePosition
    # Both default so records of workers before SIMILAR_K still parse.
    similar: list[SimilarTicketRef] = Field(
        default_factory=list,
        description="The `SIMILAR_K` nearest tickets seen before this one (stored, or earlier "
        "in the same micro-batch), nearest first; the ticket's own id is left out. Empty "
        "when `SIMILAR_K=0` (the default).",
    )
    possible_duplicate_of: str | None = Field(
        default=None,
        description="The nearest of `similar` when its distance is below "
        "`DUPLICATE_MAX_DISTANCE`; null otherwise.",
    )
    audit: bool = Field(
        default=False,
        description="Held for a person although the gate was sure: one of the random share "
        "`REVIEW_AUDIT_SHARE` of confident tickets, so people's answers include a sample of "
        "what the model would route alone (retraining judges challengers on it). False from "
        "workers before it.",
    )
    incident_id: str | None = Field(
        default=None,
        description="The emerging incident (`ticket-incidents`) this ticket belongs to, when "
        "the worker's detector put it in one; null otherwise (and from workers before it).",
    )
