"""What the worker adds to its records: the nearest earlier tickets, possible duplicates, and
the drift monitor's record. The labelled ticket itself is built by
:mod:`ticketflow.models.record`. Pure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ticketflow.adapters.store import Neighbour
from ticketflow.schemas import (
    LabeledTicket,
    MonitorRecord,
    Ticket,
)
from ticketflow.schemas.labeled import SimilarTicketRef
from ticketflow.schemas.monitoring import pack_vector


def similar_tickets(
    ids: Sequence[str],
    vectors: npt.NDArray[np.float32],
    stored: Sequence[Sequence[Neighbour]],
    *,
    k: int,
    earlier_ids: Sequence[str] = (),
    earlier_vectors: npt.NDArray[np.float32] | None = None,
) -> list[list[SimilarTicketRef]]:
    """Per row: the ``k`` nearest tickets seen before it, nearest first.

    ``stored``: each row's neighbours in the vector store, which holds none of this batch;
    ``earlier_ids`` / ``earlier_vectors``: tickets of earlier batches the store may not have
    held yet when it was queried. Those and the batch's earlier rows are compared here
    (cosine distance, as the store measures it). So a ticket gets the same neighbours
    whatever micro-batch it came in, and of two copies the later points at the earlier,
    never both ways. A ticket's own id is left out (a redelivered ticket finds its own
    earlier record; a second event for an id is an update, not a duplicate); an id found
    more than once counts once, at its smallest distance.
    """
    before = len(earlier_ids)
    matrix = np.asarray(vectors, dtype=np.float32)
    if earlier_vectors is not None and before:
        matrix = np.vstack([np.asarray(earlier_vectors, dtype=np.float32), matrix])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.maximum(norms, 1e-12)
    distances = 1.0 - unit[before:] @ unit.T
    every_id = [*earlier_ids, *ids]
    found: list[list[SimilarTicketRef]] = []
    for row, ticket_id in enumerate(ids):
        nearest: dict[str, float] = {}
        candidates = [(n.ticket_id, n.distance) for n in stored[row]]
        candidates += [(every_id[j], float(distances[row, j])) for j in range(before + row)]
        for other, distance in candidates:
            if other == ticket_id:
                continue
            # Float error puts an identical vector a hair below 0.
            distance = max(0.0, float(distance))
            if other not in nearest or distance < nearest[other]:
                nearest[other] = distance
        ranked = sorted(nearest.items(), key=lambda item: (item[1], item[0]))[:k]
        found.append([SimilarTicketRef(ticket_id=i, distance=d) for i, d in ranked])
    return found


def possible_duplicate(similar: Sequence[SimilarTicketRef], max_distance: float) -> str | None:
    """The nearest ticket's id when it is closer than ``max_distance`` (DUPLICATE_MAX_DISTANCE)."""
    if similar and similar[0].distance < max_distance:
        return similar[0].ticket_id
    return None


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
