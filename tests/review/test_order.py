"""The desk's orders of held tickets (pure functions): margin, oldest, and margin-diverse,
which spreads the first answers over the class boundaries the model hesitates on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import pytest

from ticketflow.adapters.store import StoredRecord
from ticketflow.review.queue import (
    HeldTicket,
    Order,
    ReviewQueue,
    boundary,
    in_order,
    margin_diverse,
)

pytestmark = pytest.mark.unit


def ticket(name: str, margin: float, first: str, second: str, at: float = 0.0) -> HeldTicket:
    return HeldTicket(
        ticket_id=name,
        processed_at=at,
        margin=margin,
        model_version="v1",
        predicted={"queue": first},
        probability={"queue": 0.5},
        unsure=("queue",),
        top={"queue": [(first, 0.5), (second, 0.5 - margin)]},
    )


# Ten doubts between Billing and Sales (margins 0.01..0.10), two between Billing and IT.
PILE = [ticket(f"b{i}", (i + 1) / 100, "Billing", "Sales") for i in range(10)]
OTHER = [ticket("i0", 0.20, "IT", "Billing"), ticket("i1", 0.30, "Billing", "IT")]


def ids(tickets: list[HeldTicket]) -> list[str]:
    return [t.ticket_id for t in tickets]


def test_a_pile_on_one_boundary_takes_turns_with_the_other_boundaries() -> None:
    # b_k's margin counts (k+1)/100 + 0.05 k: b0 .01, b1 .07, b2 .13, b3 .19, then i0 (.20),
    # b4 .25, b5 .31, i1 (.30 + .05 = .35), b6 .37 ...
    ordered = margin_diverse(PILE + OTHER, penalty=0.05)
    assert ids(ordered)[:9] == ["b0", "b1", "b2", "b3", "i0", "b4", "b5", "i1", "b6"]
    assert ids(in_order(PILE + OTHER, Order.MARGIN))[-2:] == ["i0", "i1"]


def test_every_ticket_once_and_no_penalty_is_the_margin_order() -> None:
    tickets = OTHER + PILE[::-1]
    assert sorted(ids(margin_diverse(tickets))) == sorted(ids(tickets))
    assert margin_diverse(tickets, penalty=0.0) == in_order(tickets, Order.MARGIN)
    assert margin_diverse([]) == []


def test_a_boundary_is_the_unordered_pair_of_the_unsure_targets_top_labels() -> None:
    assert boundary(OTHER[0]) == boundary(OTHER[1]) == ("queue", "Billing", "IT")
    assert boundary(PILE[0]) != boundary(OTHER[0])


def test_oldest_is_first_labelled_first() -> None:
    tickets = [ticket("late", 0.01, "A", "B", at=9.0), ticket("early", 0.9, "A", "B", at=1.0)]
    assert ids(in_order(tickets, Order.OLDEST)) == ["early", "late"]


class Held:
    """Held records of a store, as the queue reads them."""

    def __init__(self, tickets: list[HeldTicket]) -> None:
        self.held = {
            t.ticket_id: StoredRecord(
                ticket_id=t.ticket_id,
                metadata={
                    "needs_review": True,
                    "label_source": "model",
                    "processed_at": t.processed_at,
                    "review_margin": t.margin,
                    "queue": t.predicted["queue"],
                    "queue_probability": 0.5,
                    "queue_needs_review": True,
                    "queue_top": json.dumps(t.top["queue"]),
                },
            )
            for t in tickets
        }

    def held_ids(self) -> list[str]:
        return list(self.held)

    def records(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        return {i: self.held[i] for i in ids}


def test_the_desk_serves_the_diverse_order_from_the_stored_records() -> None:
    queue = ReviewQueue(Held(PILE + OTHER), lambda: ["queue"])
    page = queue.page(order=Order.MARGIN_DIVERSE, limit=5)
    assert ids(page.items) == ids(margin_diverse(PILE + OTHER))[:5]
    assert "i0" in ids(page.items)
    assert "i0" not in ids(queue.page(order=Order.MARGIN, limit=5).items)


def test_audits_come_first_in_every_order_oldest_first() -> None:
    sure = replace(ticket("audit-late", 0.9, "A", "B", at=5.0), audit=True, unsure=())
    earlier = replace(ticket("audit-early", 0.95, "A", "B", at=2.0), audit=True, unsure=())
    for order in Order:
        ordered = ids(in_order([*PILE, sure, *OTHER, earlier], order))
        assert ordered[:2] == ["audit-early", "audit-late"], order
        assert sorted(ordered[2:]) == sorted(ids(PILE + OTHER))
