"""The worker's records of one labelled ticket: review per target, the ticket held by its gate."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.test_record import SURE_OF_QUEUE, VECTOR, _label
from ticketflow.adapters.store import Neighbour
from ticketflow.schemas import MonitorRecord, Ticket
from ticketflow.schemas.labeled import SimilarTicketRef
from ticketflow.stream.outputs import (
    monitor_record,
    possible_duplicate,
    similar_tickets,
)

pytestmark = pytest.mark.unit


def test_monitor_records_of_older_workers_still_parse() -> None:
    old = _label(SURE_OF_QUEUE, ["queue"])
    record = monitor_record(old, Ticket(ticket_id="T-1", body="x"), VECTOR, "x")
    payload = record.model_dump(mode="json")
    del payload["needs_review_by_target"]
    assert MonitorRecord.model_validate(payload).needs_review_by_target == {}


def _near(*pairs: tuple[str, float]) -> list[Neighbour]:
    return [Neighbour(ticket_id=i, distance=d, metadata={}) for i, d in pairs]


def test_similar_tickets_merge_the_store_and_the_batchs_earlier_rows_leaving_self_out() -> None:
    vectors = np.array([[1, 0, 0], [0, 1, 0], [2, 0, 0], [0.6, 0.8, 0]], dtype=np.float32)
    ids = ["A", "B", "C", "A"]  # the last is a second event of A: an update, not a twin
    stored = [
        _near(("A", 0.0), ("S1", 0.3), ("S2", 0.5)),  # a redelivered A finds its own record
        _near(("S2", 0.2), ("S1", 1.5)),
        _near(("S1", 0.4), ("A", 0.05)),  # A both stored and earlier in the batch
        _near(),
    ]
    found = similar_tickets(ids, vectors, stored, k=2)
    as_pairs = [[(s.ticket_id, round(s.distance, 4)) for s in row] for row in found]
    assert as_pairs[0] == [("S1", 0.3), ("S2", 0.5)]  # itself left out, later rows not seen
    assert as_pairs[1] == [("S2", 0.2), ("A", 1.0)]  # orthogonal earlier row: distance 1
    assert as_pairs[2] == [("A", 0.0), ("S1", 0.4)]  # A: same direction, the smaller of two
    assert as_pairs[3] == [("B", 0.2), ("C", 0.4)]  # cos 0.8 with B and with C; never A
    assert all(s.distance >= 0 for row in found for s in row)
    assert similar_tickets(["A"], vectors[:1], [_near(("B", -1e-7))], k=5)[0][0].distance == 0


def test_possible_duplicate_is_the_nearest_when_it_is_below_the_cut() -> None:
    near = [
        SimilarTicketRef(ticket_id="A", distance=0.001),
        SimilarTicketRef(ticket_id="B", distance=0.0),
    ]
    assert possible_duplicate(near, 0.002) == "A"  # the nearest is the first: its order is kept
    assert possible_duplicate(near, 0.001) is None  # "below": a tie is not a duplicate
    assert possible_duplicate([], 0.5) is None
