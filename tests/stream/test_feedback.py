"""Feedback: corrections merged into the stored records; unknown ids and junk dead-lettered."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.stream.test_reload import ticket
from tests.stream.test_worker import Recorder, make_labeler
from ticketflow.schemas import DeadLetter, LabelFeedback
from ticketflow.stream.feedback import FeedbackApplier, decode_feedback
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.routing import Position, Rejected
from ticketflow.stream.worker import RawEvent

pytestmark = pytest.mark.unit


def event(payload: bytes, offset: int) -> RawEvent:
    return RawEvent(key=None, value=payload, position=Position("ticket-feedback", 0, offset))


def correction(ticket_id: str, queue: str, by: str = "alice") -> bytes:
    return (
        LabelFeedback(ticket_id=ticket_id, labels={"queue": queue}, corrected_by=by)
        .model_dump_json()
        .encode()
    )


def test_corrections_update_metadata_and_rejects_go_to_the_dlq(tmp_path: Path) -> None:
    labeler, _, _, store, _ = make_labeler(tmp_path)
    asyncio.run(labeler.handle([ticket(0), ticket(1)]))
    predicted = store.get(["t0"])["metadatas"][0]["queue"]
    dead, metrics = Recorder(), WorkerMetrics()
    applier = FeedbackApplier(
        collection=store.collection,
        send_dead=dead,
        executor=ThreadPoolExecutor(max_workers=1),
        metrics=metrics,
        dlq_keep_bytes=1000,
    )
    outcome = asyncio.run(
        applier.handle(
            [
                event(correction("t0", "Payments"), 0),
                event(correction("t0", "Refunds", by="bob"), 1),  # later one wins
                event(correction("nope", "Payments"), 2),
                event(b'{"ticket_id": "t1", "labels": {}}', 3),
                event(b"not json", 4),
            ]
        )
    )
    assert outcome.applied == ["t0", "t0"] and outcome.unknown == ["nope"]
    meta = store.get(["t0"])["metadatas"][0]
    assert meta["label_source"] == "human"
    assert meta["queue"] == meta["human_queue"] == "Refunds"
    assert meta["queue_predicted"] == predicted  # the model's label is kept
    assert meta["feedback_by"] == "bob"
    assert meta["model_version"] == "v-test"  # untouched keys stay
    untouched = store.get(["t1"])["metadatas"][0]
    assert untouched["label_source"] == "model"
    letters = [DeadLetter.model_validate_json(v) for _, v in dead.sent]
    assert sorted(d.error_type.value for d in letters) == [
        "invalid_json",
        "unknown_ticket",
        "validation_error",
    ]
    unknown = next(d for d in letters if d.error_type.value == "unknown_ticket")
    assert unknown.ticket_id == "nope" and "nope" in unknown.reason
    assert unknown.source_topic == "ticket-feedback" and unknown.source_offset == 2


def test_decode_feedback_reasons() -> None:
    assert isinstance(decode_feedback(b"[1]"), Rejected)
    bad = decode_feedback(json.dumps({"ticket_id": "x", "labels": {"queue": ""}}).encode())
    assert isinstance(bad, Rejected) and "labels" in bad.reason
    ok = decode_feedback(correction("x", "Billing"))
    assert isinstance(ok, LabelFeedback) and ok.labels == {"queue": "Billing"}


def test_every_label_given_is_counted_against_the_models_label(tmp_path: Path) -> None:
    """ticketflow_corrections_total: corrections and confirmations, each against the label the
    model stored (not a person's earlier one); targets the model does not predict, and
    unknown tickets, are not counted."""
    labeler, _, _, store, _ = make_labeler(tmp_path)
    asyncio.run(labeler.handle([ticket(0), ticket(1)]))
    found = store.get(["t0", "t1"])
    predicted = {i: m["queue"] for i, m in zip(found["ids"], found["metadatas"], strict=True)}
    metrics = WorkerMetrics()
    applier = FeedbackApplier(
        collection=store.collection,
        send_dead=Recorder(),
        executor=ThreadPoolExecutor(max_workers=1),
        metrics=metrics,
        dlq_keep_bytes=1000,
    )
    other = "IT" if predicted["t0"] != "IT" else "Billing"
    both = LabelFeedback(
        ticket_id="t1", labels={"queue": predicted["t1"], "language": "en"}, corrected_by="a"
    )
    outcome = asyncio.run(
        applier.handle(
            [
                event(correction("t0", other), 0),
                event(correction("t0", "Payments"), 1),  # the agent changes their mind
                event(both.model_dump_json().encode(), 2),  # a confirmation + an unknown target
                event(correction("nope", other), 3),
            ]
        )
    )
    assert [(r.target, r.predicted, r.corrected) for r in outcome.reviewed] == [
        ("queue", predicted["t0"], other),
        ("queue", predicted["t0"], "Payments"),
        ("queue", predicted["t1"], predicted["t1"]),
    ]
    counts = {
        (s.labels["target"], s.labels["predicted"], s.labels["corrected"], s.labels["changed"]): (
            s.value
        )
        for family in metrics.registry.collect()
        if family.name == "ticketflow_corrections"
        for s in family.samples
        if s.name == "ticketflow_corrections_total"
    }
    expected = {
        ("queue", predicted["t0"], other, "true"): 1.0,
        ("queue", predicted["t0"], "Payments", "true"): 1.0,
        ("queue", predicted["t1"], predicted["t1"], "false"): 1.0,
    }
    assert counts == expected
