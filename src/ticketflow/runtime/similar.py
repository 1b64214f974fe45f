"""Similar tickets: the nearest stored tickets of a stored one, or of a new ticket's text.

A new ticket is embedded as the worker embeds it (the model text of
:func:`ticketflow.models.text.build_texts`, then the encoder whose vectors the pipeline stores:
the static one with a cascade, docs/memory.md), so its neighbours are found in the same space
as the stored tickets. Nothing is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ticketflow.adapters.store import ChromaVectorStore, Neighbour
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket
from ticketflow.schemas import store as layout

logger = logging.getLogger(__name__)

MAX_K = 100
SUBJECT_CHARS = 120


class UnknownTicketError(LookupError):
    """The ticket id is not in the vector store."""


@dataclass(frozen=True)
class SimilarTicket:
    ticket_id: str
    distance: float
    labels: dict[str, str]
    label_source: str
    subject: str | None = None  # only when the store keeps the model text (CHROMA_DOCUMENT)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ticket_id": self.ticket_id,
            "distance": round(self.distance, 6),
            "labels": self.labels,
            "label_source": self.label_source,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        return out


def query_vectors(pipeline: LabelingPipeline, tickets: Sequence[Ticket]) -> FloatMatrix:
    """The vectors ``pipeline.run`` would store for ``tickets``, without classifying them."""
    texts = build_texts(tickets, max_chars=pipeline.max_text_chars)
    return (pipeline.static_encoder or pipeline.encoder).encode(texts)


def similar_to_id(
    store: ChromaVectorStore,
    ticket_id: str,
    *,
    k: int,
    targets: Sequence[str],
    where: Mapping[str, str] | None = None,
) -> list[SimilarTicket]:
    """The ``k`` nearest neighbours of a stored ticket (itself left out)."""
    record = store.records([ticket_id], vectors=True).get(ticket_id)
    if record is None or record.vector is None:
        raise UnknownTicketError(f"ticket {ticket_id!r} is not in the vector store")
    found = store.query(record.vector[None, :], _k(k) + 1, where=where, documents=True)[0]
    return _results([n for n in found if n.ticket_id != ticket_id][: _k(k)], targets)


def similar_to_stored(
    store: ChromaVectorStore,
    vectors: Mapping[str, FloatMatrix],
    *,
    k: int,
    targets: Sequence[str],
) -> dict[str, list[SimilarTicket]]:
    """The ``k`` nearest neighbours of several stored tickets (their ``vectors`` by id, each
    left out of its own answer), in one query."""
    if not vectors:
        return {}
    ids = list(vectors)
    matrix = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in ids])
    found = store.query(matrix, _k(k) + 1, documents=True)
    return {
        ticket_id: _results([n for n in near if n.ticket_id != ticket_id][: _k(k)], targets)
        for ticket_id, near in zip(ids, found, strict=True)
    }


def similar_to_tickets(
    store: ChromaVectorStore,
    pipeline: LabelingPipeline,
    tickets: Sequence[Ticket],
    *,
    k: int,
    where: Mapping[str, str] | None = None,
    exclude_self: bool = False,
) -> list[list[SimilarTicket]]:
    """The ``k`` nearest stored tickets of each new ticket. ``exclude_self``: leave a stored
    ticket with the query's own id out (the query is a stored ticket's altered text)."""
    if not tickets:
        return []
    vectors = query_vectors(pipeline, tickets)
    extra = 1 if exclude_self else 0
    found = store.query(vectors, _k(k) + extra, where=where, documents=True)
    targets = pipeline.classifier.targets
    results = []
    for ticket, neighbours in zip(tickets, found, strict=True):
        if exclude_self:
            neighbours = [n for n in neighbours if n.ticket_id != ticket.ticket_id]
        results.append(_results(neighbours[: _k(k)], targets))
    return results


def _k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, not {k}")
    return k


def _results(neighbours: Sequence[Neighbour], targets: Sequence[str]) -> list[SimilarTicket]:
    return [
        SimilarTicket(
            ticket_id=n.ticket_id,
            distance=n.distance,
            labels={t: str(n.metadata[t]) for t in targets if n.metadata.get(t) is not None},
            label_source=layout.label_source(n.metadata).value,
            subject=_subject(n.document),
        )
        for n in neighbours
    ]


def _subject(document: str | None) -> str | None:
    """The model text's first line: the subject (or the body's start when there was none)."""
    if not document:
        return None
    first = document.split("\n", 1)[0].strip()
    return first if len(first) <= SUBJECT_CHARS else first[: SUBJECT_CHARS - 1] + "…"


def parse_where(pairs: Sequence[str]) -> dict[str, str]:
    """``["queue=Billing"]`` -> ``{"queue": "Billing"}`` (a filter on the current labels)."""
    where: dict[str, str] = {}
    for pair in pairs:
        target, sep, label = pair.partition("=")
        if not sep or not target.strip():
            raise ValueError(f"--where {pair!r}: expected TARGET=LABEL")
        where[target.strip()] = label.strip()
    return where
