"""Predictions -> monitor sample is derived once: training's reference, ``ticketflow drift
reference``, the drift benchmark and the worker's own records agree row by row, including
the review rule per target (with the fallback for a target without a threshold of its own)
and the ticket's flag from its review gate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.drift import sample_of
from tests.helpers import HashingEncoder
from ticketflow.batch.train import HeldOutRows, TrainRequest, train, write_held_out_reference
from ticketflow.data.datasets import load_labeled
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import EMBEDDING_LR
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.review import ReviewPolicy
from ticketflow.models.text import build_texts
from ticketflow.monitoring.reference import ReferenceSpec, load_reference
from ticketflow.monitoring.sample import pipeline_sample
from ticketflow.schemas import Ticket
from ticketflow.stream.routing import Position

pytestmark = pytest.mark.unit

FALLBACK = 0.99  # REVIEW_THRESHOLD for the target that has no threshold of its own


def test_train_cli_bench_and_worker_derive_the_same_sample(tmp_path: Path) -> None:
    data_file = write_tickets(generate_tickets(300), tmp_path / "t.jsonl")
    data = load_labeled(data_file, targets=["queue", "priority"], progress=False)
    encoder = HashingEncoder()
    registry = ModelRegistry(tmp_path / "registry")
    train(
        TrainRequest(data, max_text_chars=1000, config=EMBEDDING_LR),
        encoder=encoder,
        registry=registry,
        progress=False,
    )
    classifier = registry.load().classifier
    # A model without a threshold for priority: the fallback decides, everywhere alike.
    classifier.review_thresholds.pop("priority")
    pipeline = LabelingPipeline(encoder, classifier, max_text_chars=1000)
    tickets = [Ticket.model_validate(t) for t in generate_tickets(40, seed=3)]
    texts = build_texts(tickets, max_chars=1000)

    write_held_out_reference(
        ReferenceSpec(tmp_path / "reference", sample_size=1_000),
        version="v-test",
        classifier=classifier,
        rows=HeldOutRows(
            vectors=encoder.encode(texts), texts=texts, languages=[t.language for t in tickets]
        ),
        seed=1,
        review=ReviewPolicy(threshold=FALLBACK),
    )
    trained = load_reference(tmp_path / "reference", "v-test").sample
    cli = pipeline_sample(pipeline, tickets, review=ReviewPolicy(threshold=FALLBACK))
    bench = sample_of(pipeline, tickets, ReviewPolicy(threshold=FALLBACK))
    result = pipeline.run(tickets)
    published = [
        labeled_ticket(
            ticket,
            predictions,
            Stamp.of(
                pipeline,
                model_version="v-test",
                policy=ReviewPolicy(threshold=FALLBACK),
                processed_at=datetime.now(UTC),
            ),
            source=Position("tickets", 0, row).source(),
        )
        for row, (ticket, predictions) in enumerate(zip(tickets, result.predictions, strict=True))
    ]
    worker = [t.needs_review for t in published]
    worker_by_target = {
        target: [t.predictions[target].needs_review for t in published]
        for target in ("queue", "priority")
    }

    assert trained.needs_review == cli.needs_review == bench.needs_review == worker
    assert (
        trained.needs_review_by_target
        == cli.needs_review_by_target
        == bench.needs_review_by_target
        == worker_by_target
    )
    assert trained.labels == cli.labels == bench.labels
    assert trained.text_lengths == cli.text_lengths == bench.text_lengths
    # The ticket is gated by its first target, queue; priority is flagged on its own, and
    # the fallback decided its flags: it flags more tickets than the queue's own cut.
    queue_cut = classifier.review_thresholds["queue"]
    by_queue = [p["queue"].probability < queue_cut for p in result.predictions]
    assert worker == by_queue == worker_by_target["queue"]
    by_fallback = [p["priority"].probability < FALLBACK for p in result.predictions]
    assert worker_by_target["priority"] == by_fallback
    assert sum(by_fallback) > sum(by_queue)
