"""The worker's records of one labelled ticket: review per target, the ticket held by its gate."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ticketflow.models.classifier import Prediction
from ticketflow.schemas import LabeledTicket, MonitorRecord, Ticket
from ticketflow.schemas.store import labeled_metadata
from ticketflow.stream.outputs import labeled_ticket, monitor_record
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
        Position("tickets", 0, 7),
        model_version="v1",
        embedding_model="enc",
        review_thresholds=CUTS,
        review_gate=gate,
        processed_at=datetime.now(UTC),
    )


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


def test_monitor_records_of_older_workers_still_parse() -> None:
    old = _label(SURE_OF_QUEUE, ["queue"])
    record = monitor_record(old, Ticket(ticket_id="T-1", body="x"), VECTOR, "x")
    payload = record.model_dump(mode="json")
    del payload["needs_review_by_target"]
    assert MonitorRecord.model_validate(payload).needs_review_by_target == {}
