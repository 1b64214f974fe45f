"""Build the records the worker writes: labelled tickets and vector-store metadata. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from models.classifier import Prediction
from schemas import LabeledTicket, LabelScore, SourcePosition, TargetPrediction, Ticket
from stream.routing import Position
from stream.vector_store import MetadataValue


def labeled_ticket(
    ticket: Ticket,
    predictions: Mapping[str, Prediction],
    position: Position,
    *,
    model_version: str,
    embedding_model: str,
    review_threshold: float,
    processed_at: datetime,
) -> LabeledTicket:
    targets = {
        target: TargetPrediction(
            label=p.label,
            probability=p.probability,
            top=[LabelScore(label=label, probability=prob) for label, prob in p.top],
        )
        for target, p in predictions.items()
    }
    return LabeledTicket(
        ticket_id=ticket.ticket_id,
        predictions=targets,
        needs_review=any(p.probability < review_threshold for p in predictions.values()),
        model_version=model_version,
        embedding_model=embedding_model,
        event_time=ticket.created_at,
        processed_time=processed_at,
        source=SourcePosition(
            topic=position.topic, partition=position.partition, offset=position.offset
        ),
    )


def vector_metadata(labeled: LabeledTicket) -> dict[str, MetadataValue]:
    """Flat metadata (Chroma accepts scalars only): one label and probability per target."""
    metadata: dict[str, MetadataValue] = {
        "model_version": labeled.model_version,
        "needs_review": labeled.needs_review,
        "label_source": "model",
        "processed_at": labeled.processed_time.timestamp(),
        "source_partition": labeled.source.partition,
        "source_offset": labeled.source.offset,
    }
    for target, prediction in labeled.predictions.items():
        metadata[target] = prediction.label
        metadata[f"{target}_probability"] = prediction.probability
    return metadata
