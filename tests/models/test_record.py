"""The labelled-ticket record (models.record): per-target review flags, the gate, the wire
format."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ticketflow.models.classifier import Prediction
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.models.review import ReviewCuts
from ticketflow.schemas import LabeledTicket, Ticket
from ticketflow.schemas.labeled import SimilarTicketRef
from ticketflow.schemas.store import labeled_metadata
from ticketflow.stream.outputs import (
    monitor_record,
)
from ticketflow.stream.routing import Position

pytestmark = pytest.mark.unit


# The review cuts of the bueck-v3 model (precision 0.90, out-of-fold).
CUTS = {"queue": 0.835, "type": 0.815, "priority": 0.832}
VECTOR = np.ones(4, dtype=np.float32)


def _prediction(label: str, probability: float) -> Prediction:
    return Prediction(label=label, probability=probability, top=((label, probability),))


def _label(predictions: dict[str, Prediction], gate: list[str]) -> LabeledTicket:
    return labeled_ticket(
        Ticket(ticket_id="T-1", subject="Refund", body="I was charged twice"),
        predictions,
        _stamp(gate),
        source=Position("tickets", 0, 7).source(),
    )


def _stamp(gate: list[str]) -> Stamp:
    cuts = ReviewCuts(thresholds=CUTS, gate=tuple(gate))
    return Stamp("v1", "enc", cuts, datetime.now(UTC))


SURE_OF_QUEUE = {
    "queue": _prediction("Billing and Payments", 0.95),
    "type": _prediction("Request", 0.90),
    "priority": _prediction("high", 0.80),
}


def test_sure_of_its_queue_unsure_of_its_priority_is_routed_and_flagged_for_priority() -> None:
    labeled = _label(SURE_OF_QUEUE, ["queue"])
    assert labeled.needs_review is False  # routed by queue, not held for its priority
    assert labeled.review_gate == ["queue"]
    assert labeled.predictions["priority"].needs_review is True  # an agent checks priority
    assert labeled.predictions["queue"].needs_review is False
    assert labeled.predictions["type"].needs_review is False
    assert {t: p.review_threshold for t, p in labeled.predictions.items()} == CUTS

    # On the wire: the old top-level field keeps its name and type, next to the new ones.
    wire = LabeledTicket.model_validate_json(labeled.model_dump_json())
    assert wire == labeled
    raw = labeled.model_dump(mode="json")
    assert raw["needs_review"] is False
    assert raw["predictions"]["priority"]["needs_review"] is True
    assert raw["predictions"]["priority"]["review_threshold"] == 0.832

    # The vector store and the drift monitor get the same per-target flags.
    stored = labeled_metadata(labeled)
    assert stored["needs_review"] is False
    assert stored["priority_needs_review"] is True and stored["queue_needs_review"] is False
    record = monitor_record(labeled, Ticket(ticket_id="T-1", body="x"), VECTOR, "x")
    assert record.needs_review is False
    assert record.needs_review_by_target == {"queue": False, "type": False, "priority": True}


def test_a_gate_of_several_targets_holds_the_ticket_when_any_of_them_is_unsure() -> None:
    assert _label(SURE_OF_QUEUE, ["queue", "priority"]).needs_review is True
    assert _label(SURE_OF_QUEUE, ["queue", "type"]).needs_review is False
    unsure_queue = {**SURE_OF_QUEUE, "queue": _prediction("Billing and Payments", 0.80)}
    labeled = _label(unsure_queue, ["queue"])
    assert labeled.needs_review is True and labeled.predictions["queue"].needs_review is True


def test_labeled_tickets_without_similar_fields_parse_and_new_ones_round_trip() -> None:
    plain = _label(SURE_OF_QUEUE, ["queue"])
    raw = plain.model_dump(mode="json")
    assert raw["similar"] == [] and raw["possible_duplicate_of"] is None
    del raw["similar"], raw["possible_duplicate_of"]  # a record of a worker before SIMILAR_K
    assert LabeledTicket.model_validate(raw) == plain
    near = [SimilarTicketRef(ticket_id="T-0", distance=0.001)]
    labeled = labeled_ticket(
        Ticket(ticket_id="T-1", body="I was charged twice"),
        SURE_OF_QUEUE,
        _stamp(["queue"]),
        source=Position("tickets", 0, 8).source(),
        similar=near,
        possible_duplicate_of="T-0",
    )
    wire = LabeledTicket.model_validate_json(labeled.model_dump_json())
    assert wire.similar == near and wire.possible_duplicate_of == "T-0"


def test_an_audited_ticket_is_held_and_marked_in_the_record_and_the_store() -> None:
    cuts = ReviewCuts(thresholds=CUTS, gate=("queue",), audit_share=0.999)
    stamp = Stamp("v1", "enc", cuts, datetime.now(UTC))
    ticket = Ticket(ticket_id="T-1", subject="Refund", body="I was charged twice")
    labeled = labeled_ticket(ticket, SURE_OF_QUEUE, stamp, source=Position("t", 0, 1).source())
    assert labeled.audit is True and labeled.needs_review is True
    assert labeled_metadata(labeled)["review_audit"] is True
    routed = _label(SURE_OF_QUEUE, ["queue"])
    assert routed.audit is False and "review_audit" not in labeled_metadata(routed)
