"""One held ticket as a person reviews it: its stored text and tags, the model's top labels
per target, which targets are unsure, and its nearest stored tickets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.runtime.similar import SimilarTicket, UnknownTicketError, similar_to_id
from ticketflow.schemas import store as layout

SIMILAR_SHOWN = 5


@dataclass(frozen=True)
class TargetView:
    target: str
    current: str | None  # the label the record holds now (a person's once answered)
    top: list[tuple[str, float]]  # the model's most probable labels, best first
    unsure: bool  # below this target's review cut
    human: str | None  # a person's label, if one was given
    known: list[str]  # the classes the served model knows for this target


@dataclass(frozen=True)
class TicketView:
    ticket_id: str
    document: str | None  # the stored text (CHROMA_DOCUMENT); None when the store keeps none
    tags: list[str]
    targets: list[TargetView]
    needs_review: bool
    awaiting: bool  # held and not yet answered by a person
    label_source: str
    model_version: str
    processed_at: float
    feedback_by: str | None
    similar: list[SimilarTicket]
    incident_id: str | None = None  # the emerging incident the worker put it in


def ticket_view(
    store: ChromaVectorStore,
    ticket_id: str,
    *,
    known: Mapping[str, Sequence[str]],
    similar_k: int = SIMILAR_SHOWN,
) -> TicketView:
    """The stored ticket ``ticket_id`` for the served model's targets (``known``: its classes
    per target); :class:`UnknownTicketError` when the store does not hold it."""
    record = store.records([ticket_id], documents=True).get(ticket_id)
    if record is None:
        raise UnknownTicketError(f"ticket {ticket_id!r} is not in the vector store")
    metadata = record.metadata
    targets = [
        TargetView(
            target=target,
            current=None if metadata.get(target) is None else str(metadata[target]),
            top=layout.top_labels(metadata, target),
            unsure=bool(metadata.get(f"{target}{layout.REVIEW_SUFFIX}")),
            human=layout.human_label(metadata, target),
            known=list(classes),
        )
        for target, classes in known.items()
    ]
    similar = similar_to_id(store, ticket_id, k=similar_k, targets=list(known))
    feedback_by = metadata.get("feedback_by")
    return TicketView(
        ticket_id=ticket_id,
        document=record.document or None,
        tags=layout.stored_tags(metadata),
        targets=targets,
        needs_review=bool(metadata.get("needs_review")),
        awaiting=layout.awaiting_review(metadata),
        label_source=layout.label_source(metadata).value,
        model_version=str(metadata.get("model_version", "")),
        processed_at=float(metadata.get("processed_at", 0.0)),
        feedback_by=None if feedback_by is None else str(feedback_by),
        similar=similar,
        incident_id=layout.incident_id(metadata),
    )
