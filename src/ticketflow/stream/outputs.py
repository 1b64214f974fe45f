"""Build the records the worker writes: labelled tickets and vector-store metadata. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from ticketflow.models.classifier import Prediction, needs_review, target_review
from ticketflow.schemas import (
    LabeledTicket,
    LabelScore,
    MonitorRecord,
    SourcePosition,
    TargetPrediction,
    Ticket,
)
from ticketflow.schemas.monitoring import pack_vector
from ticketflow.stream.routing import Position


def labeled_ticket(
    ticket: Ticket,
    predictions: Mapping[str, Prediction],
    position: Position,
    *,
    model_version: str,
    embedding_model: str,
    review_thresholds: Mapping[str, float],
    review_gate: Sequence[str],
    processed_at: datetime,
) -> LabeledTicket:
    """``review_thresholds``: per target, the probability below which a person must check its
    label; ``review_gate``: the targets whose review holds the whole ticket."""
    flags = target_review(predictions, review_thresholds)
    targets = {
        target: TargetPrediction(
            label=p.label,
            probability=p.probability,
            top=[LabelScore(label=label, probability=prob) for label, prob in p.top],
            needs_review=flags[target],
            review_threshold=review_thresholds[target],
        )
        for target, p in predictions.items()
    }
    return LabeledTicket(
        ticket_id=ticket.ticket_id,
        predictions=targets,
        needs_review=needs_review(predictions, review_thresholds, review_gate),
        review_gate=list(review_gate),
        model_version=model_version,
        embedding_model=embedding_model,
        event_time=ticket.created_at,
        processed_time=processed_at,
        source=SourcePosition(
            topic=position.topic, partition=position.partition, offset=position.offset
        ),
    )


def monitor_record(
    labeled: LabeledTicket, ticket: Ticket, vector: npt.NDArray[np.float32], text: str
) -> MonitorRecord:
    return MonitorRecord(
        ticket_id=labeled.ticket_id,
        model_version=labeled.model_version,
        embedding_model=labeled.embedding_model,
        vector_f16_b64=pack_vector(vector),
        dimension=len(vector),
        labels={t: p.label for t, p in labeled.predictions.items()},
        probabilities={t: p.probability for t, p in labeled.predictions.items()},
        needs_review=labeled.needs_review,
        needs_review_by_target={t: p.needs_review for t, p in labeled.predictions.items()},
        text_length=len(text),
        language=ticket.language,
        processed_time=labeled.processed_time,
    )
