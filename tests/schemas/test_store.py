"""The vector-store record layout: what the worker writes, a correction changes, retrain reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketflow.schemas import LabeledTicket, LabelFeedback
from ticketflow.schemas.store import (
    LabelSource,
    correction_metadata,
    human_label,
    label_source,
    labeled_metadata,
    model_label,
    model_labelled_at,
)

pytestmark = pytest.mark.unit


def _labeled() -> LabeledTicket:
    return LabeledTicket.model_validate(
        {
            "ticket_id": "T-1",
            "predictions": {
                "queue": {
                    "label": "Billing",
                    "probability": 0.91,
                    "top": [],
                    "needs_review": False,
                    "review_threshold": 0.83,
                },
                "priority": {
                    "label": "low",
                    "probability": 0.55,
                    "top": [],
                    "needs_review": True,
                    "review_threshold": 0.8,
                },
            },
            "needs_review": True,
            "review_gate": ["queue", "priority"],
            "model_version": "v1",
            "embedding_model": "m",
            "event_time": None,
            "processed_time": datetime(2026, 11, 27, tzinfo=UTC),
            "source": {"topic": "tickets", "partition": 2, "offset": 7},
        }
    )


def test_model_record_then_correction_keeps_both_labels() -> None:
    record = labeled_metadata(_labeled())
    assert label_source(record) is LabelSource.MODEL
    assert model_label(record, "queue") == ("Billing", 0.91)
    assert human_label(record, "queue") is None
    assert (record["source_partition"], record["source_offset"]) == (2, 7)
    assert record["needs_review"] is True  # the ticket: its gate has an unsure target
    assert (record["queue_needs_review"], record["priority_needs_review"]) == (False, True)

    feedback = LabelFeedback(ticket_id="T-1", labels={"queue": "Refunds"}, corrected_by="ann")
    record.update(correction_metadata(feedback, record))
    assert label_source(record) is LabelSource.HUMAN
    assert record["queue"] == "Refunds"  # the current label is the person's
    assert human_label(record, "queue") == "Refunds"
    assert model_label(record, "queue") == ("Billing", 0.91)  # the model's is kept
    assert model_label(record, "priority") == ("low", 0.55)  # untouched target

    # A second correction does not overwrite what the model said.
    again = LabelFeedback(ticket_id="T-1", labels={"queue": "Tech"}, corrected_by="bob")
    record.update(correction_metadata(again, record))
    assert human_label(record, "queue") == "Tech"
    assert model_label(record, "queue") == ("Billing", 0.91)


def test_model_labelled_at_only_while_the_labels_are_the_models() -> None:
    record = labeled_metadata(_labeled())
    assert model_labelled_at(record) == datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    feedback = LabelFeedback(ticket_id="T-1", labels={"queue": "IT"}, corrected_by="a")
    answered = {**record, **correction_metadata(feedback, record)}
    assert model_labelled_at(answered) is None  # a person answered it
    assert model_labelled_at({**record, "label_source": "imported"}) is None
    assert model_labelled_at({"label_source": "model"}) is None  # no processed_at
    assert model_labelled_at({"processed_at": True}) is None
