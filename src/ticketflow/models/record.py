"""The labelled-ticket record: the one place a :class:`LabeledTicket` is built.

The worker publishes it on ``labeled-tickets``, backfill turns it into the vector-store
metadata of a historical ticket, and ``ticketflow serve`` answers with it; all three build it
here, so a field added to the contract is filled the same way everywhere. Pure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ticketflow.models.classifier import Prediction
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.review import ReviewCuts, ReviewPolicy
from ticketflow.schemas import LabeledTicket, LabelScore, SourcePosition, TargetPrediction, Ticket
from ticketflow.schemas.labeled import SimilarTicketRef

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stamp:
    """What every record of one batch shares: the model that labelled it, its encoder, the
    review cuts it was judged by, and when."""

    model_version: str
    embedding_model: str
    cuts: ReviewCuts
    processed_at: datetime

    @classmethod
    def of(
        cls,
        pipeline: LabelingPipeline,
        *,
        model_version: str,
        policy: ReviewPolicy,
        processed_at: datetime,
    ) -> Stamp:
        """The stamp of ``pipeline``'s model, its cuts resolved under ``policy``."""
        return cls(
            model_version=model_version,
            embedding_model=pipeline.encoder.name,
            cuts=policy.cuts(pipeline.classifier),
            processed_at=processed_at,
        )


def labeled_ticket(
    ticket: Ticket,
    predictions: Mapping[str, Prediction],
    stamp: Stamp,
    *,
    source: SourcePosition,
    similar: Sequence[SimilarTicketRef] = (),
    possible_duplicate_of: str | None = None,
) -> LabeledTicket:
    """One labelled ticket. ``source``: where it was read (a Kafka position, or a file's line
    for backfill); ``similar``: the nearest tickets seen before it, nearest first."""
    cuts = stamp.cuts
    flags = cuts.flags(predictions)
    audit = cuts.audits(ticket.ticket_id, predictions)
    targets = {
        target: TargetPrediction(
            label=p.label,
            probability=p.probability,
            top=[LabelScore(label=label, probability=prob) for label, prob in p.top],
            needs_review=flags[target],
            review_threshold=cuts.thresholds[target],
        )
        for target, p in predictions.items()
    }
    return LabeledTicket(
        ticket_id=ticket.ticket_id,
        predictions=targets,
        needs_review=cuts.holds(predictions) or audit,
        audit=audit,
        review_gate=list(cuts.gate),
        model_version=stamp.model_version,
        embedding_model=stamp.embedding_model,
        event_time=ticket.created_at,
        processed_time=stamp.processed_at,
        source=source,
        similar=list(similar),
        possible_duplicate_of=possible_duplicate_of,
    )
