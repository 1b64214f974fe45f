"""Feedback: corrections merged into the stored records; unknown ids and junk dead-lettered."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.stream.test_reload import ticket
from tests.stream.test_worker import Recorder, make_labeler
from ticketflow.schemas import DeadLetter, LabelFeedback
from ticketflow.stream.feedback import FeedbackApplier, decode_feedback
from ticketflow.stream.metrics import ANSWER_BUCKETS, WorkerMetrics
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


def answer(ticket_id: str, at: datetime, queue: str = "Billing") -> bytes:
    feedback = LabelFeedback(
        ticket_id=ticket_id, labels={"queue": queue}, corrected_by="a", corrected_at=at
    )
    return feedback.model_dump_json().encode()


def test_time_to_answer_is_observed_once_per_ticket_from_the_models_labelling(
    tmp_path: Path,
) -> None:
    """ticketflow_review_answer_seconds: corrected_at - processed_at of a ticket's first
    answer while its labels are the model's; a second answer (in the batch or later), an
    imported ticket and an unknown one observe nothing; a feedback clock behind the
    worker's counts 0."""
    labeler, _, _, store, _ = make_labeler(tmp_path)
    asyncio.run(labeler.handle([ticket(i) for i in range(4)]))
    found = store.get(["t0", "t1", "t2", "t3"])
    labelled = {
        i: datetime.fromtimestamp(m["processed_at"], UTC)
        for i, m in zip(found["ids"], found["metadatas"], strict=True)
    }
    store.collection.update(ids=["t2"], metadatas=[{"label_source": "imported"}])
    metrics = WorkerMetrics()
    applier = FeedbackApplier(
        collection=store.collection,
        send_dead=Recorder(),
        executor=ThreadPoolExecutor(max_workers=1),
        metrics=metrics,
        dlq_keep_bytes=1000,
    )
    first = asyncio.run(
        applier.handle(
            [
                event(answer("t0", labelled["t0"] + timedelta(minutes=2)), 0),
                event(answer("t0", labelled["t0"] + timedelta(hours=5), "IT"), 1),  # 2nd
                event(answer("t1", labelled["t1"] - timedelta(seconds=30)), 2),  # skewed
                event(answer("t2", labelled["t2"] + timedelta(days=2)), 3),  # imported
                event(answer("nope", labelled["t0"] + timedelta(days=2)), 4),
            ]
        )
    )
    assert first.applied == ["t0", "t0", "t1", "t2"]
    assert first.answer_delays == pytest.approx([120.0, 0.0])
    later = asyncio.run(
        applier.handle(
            [
                event(answer("t0", labelled["t0"] + timedelta(days=1)), 5),  # answered before
                event(answer("t3", labelled["t3"] + timedelta(hours=13)), 6),
            ]
        )
    )
    assert later.answer_delays == pytest.approx([13 * 3600.0])

    def sample(suffix: str, le: str | None = None) -> float | None:
        labels = {"le": le} if le is not None else None
        name = f"ticketflow_review_answer_seconds{suffix}"
        return metrics.registry.get_sample_value(name, labels)

    assert sample("_count") == 3
    assert sample("_sum") == pytest.approx(120.0 + 13 * 3600.0)
    assert [sample("_bucket", le) for le in ("60.0", "300.0", "43200.0", "86400.0", "+Inf")] == [
        1.0,
        2.0,
        2.0,
        3.0,
        3.0,
    ]


def test_the_histogram_exists_before_any_answer() -> None:
    """Exported at 0 from the start, so increase() sees the first answer."""
    metrics = WorkerMetrics()
    assert metrics.registry.get_sample_value("ticketflow_review_answer_seconds_count") == 0
    bounds = [
        sample.labels["le"]
        for family in metrics.registry.collect()
        if family.name == "ticketflow_review_answer_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    ]
    assert bounds == [str(b) for b in ANSWER_BUCKETS] + ["+Inf"]
    assert ANSWER_BUCKETS[0] == 60 and ANSWER_BUCKETS[-1] == 7 * 86_400
