"""A small new-queue scenario of issue #29, end to end on the library: a cascade trained
without one queue, a stream where that queue arrives, agents' answers naming it, and
``retrain`` learning it in both stages.

Cheap encoders (``tests.helpers.HashingEncoder`` as the transformer and as the static model)
and generated tickets keep it well under a minute on two cores; the real encoders on real
tickets are measured in docs/learning.md. The worker's storage is ``ticketflow backfill`` of
the stream without its labels (the same record layout, the default ``CHROMA_DOCUMENT``), and
the answers are applied as the worker applies ``ticket-feedback`` (``apply_feedback``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tests.helpers import HashingEncoder
from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.batch.backfill import BackfillRequest, backfill
from ticketflow.batch.retrain import HELD_OUT, RetrainPolicy, RetrainRequest, read_store, retrain
from ticketflow.batch.train import TrainRequest, train
from ticketflow.data.datasets import load_labeled
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import ModelConfig
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import LabelFeedback, Ticket
from ticketflow.schemas import store as layout
from ticketflow.stream.feedback import apply_feedback

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NEW = "Returns and Exchanges"  # ~9% of the generated tickets
CONFIG = replace(ModelConfig(), cv_folds=3)
ANSWERS = 300  # the budget of answers
# Measured 2026-12-07 (seeds below): the challenger's F1 on the new queue is ~0.9 on unseen
# tickets; the bar leaves room for other library versions, not for a broken loop (0.0).
MIN_NEW_F1 = 0.7


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def pipeline_of(
    registry: ModelRegistry, version: str, dense: HashingEncoder, static: HashingEncoder
) -> LabelingPipeline:
    loaded = registry.load(version)
    return LabelingPipeline(dense, loaded.classifier, max_text_chars=1000, static_encoder=static)


def test_a_new_queue_is_learned_from_agents_answers(tmp_path: Path) -> None:
    dense, static = HashingEncoder(256, "test/dense"), HashingEncoder(64, "test/static")
    registry = ModelRegistry(tmp_path / "registry")
    part_a = [t for t in generate_tickets(1200, seed=21) if t["queue"] != NEW]
    data = load_labeled(
        write_jsonl(tmp_path / "a.jsonl", part_a), targets=["queue"], progress=False
    )
    champion = train(
        TrainRequest(data, max_text_chars=1000, config=CONFIG),
        encoder=dense,
        static_encoder=static,
        registry=registry,
        progress=False,
    ).version
    assert NEW not in registry.load(champion).classifier.labels("queue")

    # Stream B arrives: the worker labels and stores it (no label of its own).
    stream = [{**t, "ticket_id": f"B-{i}"} for i, t in enumerate(generate_tickets(900, seed=22))]
    unlabelled = [{k: v for k, v in t.items() if k != "queue"} for t in stream]
    pipeline = pipeline_of(registry, champion, dense, static)
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
        "tickets",
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )
    backfill(
        BackfillRequest(write_jsonl(tmp_path / "b.jsonl", unlabelled)),
        pipeline=pipeline,
        store=store,
        model_version=champion,
        progress=False,
    )

    # Agents answer the held tickets first, then reassign wrongly routed ones, within budget.
    records = store.records([t["ticket_id"] for t in stream])
    held = [t for t in stream if layout.awaiting_review(records[t["ticket_id"]].metadata)]
    wrong = [
        t
        for t in stream
        if t not in held and records[t["ticket_id"]].metadata["queue"] != t["queue"]
    ]
    answered = (held + wrong)[:ANSWERS]
    outcome = apply_feedback(
        store.collection,
        [
            LabelFeedback(
                ticket_id=t["ticket_id"], labels={"queue": t["queue"]}, corrected_by="agent"
            )
            for t in answered
        ],
    )
    assert len(outcome.applied) == len(answered) and not outcome.unknown
    new_answers = sum(t["queue"] == NEW for t in answered)
    assert new_answers >= RetrainPolicy().min_new_class_examples

    result = retrain(
        read_store(store.collection),
        RetrainRequest(config=CONFIG),
        registry=registry,
        policy=RetrainPolicy(),
        dense_encoder=dense,
    )
    challenger = registry.load(result.challenger)
    assert challenger.metadata.new_labels == {"queue": [NEW]}
    assert result.promote, result.reasons

    # Later tickets, never stored: the challenger routes the new queue, the champion cannot.
    later = generate_tickets(900, seed=23)
    truth = [t["queue"] for t in later]
    tickets = [Ticket.model_validate(t) for t in later]
    scores = {}
    for version in (champion, result.challenger):
        predicted = [
            p["queue"].label
            for p in pipeline_of(registry, version, dense, static).run(tickets).predictions
        ]
        scores[version] = (
            float(f1_score(truth, predicted, labels=[NEW], average="macro", zero_division=0)),
            float(f1_score(truth, predicted, average="macro", zero_division=0)),
        )
    new_f1, macro = scores[result.challenger]
    print(
        f"\nnew queue: {len(answered)} answers ({new_answers} name {NEW!r}); "
        f"F1 on later tickets {scores[champion][0]:.3f} -> {new_f1:.3f}, "
        f"macro-F1 {scores[champion][1]:.3f} -> {macro:.3f}; decision: {result.reasons}"
    )
    assert scores[champion][0] == 0.0
    assert new_f1 >= MIN_NEW_F1
    assert macro > scores[champion][1]
    assert (
        result.report["metrics"][HELD_OUT]["challenger"]["queue"]["per_class"][NEW]["support"] > 0
    )
    assert np.isfinite(result.report["seconds"]["embed"])
