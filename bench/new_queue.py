"""The new-queue scenario of issue #29 on endava-it, with cheap hashing encoders.

A cascade is trained on part A without one class; stream B (where the class is ~5%) is
stored as the worker stores it; simulated agents answer the held tickets, then reassign
wrongly routed ones, up to a budget; ``retrain`` (both stages, re-embedding the stored text)
learns the class. Reported: the new class's F1 and macro-F1 on later tickets (part C), for
the champion, the challenger and a model trained on A with every label.

Hashing encoders (char n-grams) stand in for MiniLM and its static model: the 2-core machine
this was written on cannot embed tens of thousands of tickets with a transformer in minutes.
Run: ``python -m bench.new_queue [--a 6000 --b 3000 --c 3000 --answers 300]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.metrics import f1_score

from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.batch.backfill import BackfillRequest, backfill
from ticketflow.batch.retrain import RetrainPolicy, RetrainRequest, read_store, retrain
from ticketflow.batch.train import TrainRequest, train
from ticketflow.data.datasets import load_labeled
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import ModelConfig
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import LabelFeedback, Ticket
from ticketflow.schemas import store as layout
from ticketflow.stream.feedback import apply_feedback

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "endava-it" / "tickets.csv"
NEW = "Administrative rights"  # 4.7% of endava-it


class Hashing:
    """Hashed character n-grams, L2-normalised: an Encoder in milliseconds."""

    def __init__(self, dimension: int, name: str) -> None:
        self._vectorizer = HashingVectorizer(
            n_features=dimension, analyzer="char_wb", ngram_range=(2, 4), norm="l2"
        )
        self._dimension, self._name = dimension, name

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        return np.asarray(self._vectorizer.transform(list(texts)).toarray(), dtype=np.float32)


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--a", type=int, default=6000)
    parser.add_argument("--b", type=int, default=3000)
    parser.add_argument("--c", type=int, default=3000)
    parser.add_argument("--answers", type=int, default=300)
    args = parser.parse_args()
    frame = pd.read_csv(args.data).sample(frac=1.0, random_state=7)
    rows = [
        {"ticket_id": f"E-{i}", "body": str(r.Document), "queue": str(r.Topic_group)}
        for i, r in enumerate(frame.itertuples())
    ]
    part_a = rows[: args.a]
    part_b = rows[args.a : args.a + args.b]
    part_c = rows[args.a + args.b : args.a + args.b + args.c]
    dense, static = Hashing(512, "bench/dense"), Hashing(128, "bench/static")
    config = replace(ModelConfig(), cv_folds=3)
    root = Path(tempfile.mkdtemp(prefix="new-queue-"))
    registry = ModelRegistry(root / "registry")

    def fit(rows_a: list[dict[str, Any]], name: str) -> str:
        data = load_labeled(write(root / name, rows_a), targets=["queue"], progress=False)
        request = TrainRequest(data, max_text_chars=1000, config=config)
        result = train(
            request, encoder=dense, static_encoder=static, registry=registry, progress=False
        )
        return result.version

    def pipeline(version: str) -> LabelingPipeline:
        classifier = registry.load(version).classifier
        return LabelingPipeline(dense, classifier, max_text_chars=1000, static_encoder=static)

    def scores(version: str) -> tuple[float, float]:
        truth = [r["queue"] for r in part_c]
        tickets = [Ticket.model_validate(r) for r in part_c]
        predicted = [p["queue"].label for p in pipeline(version).run(tickets).predictions]
        new = f1_score(truth, predicted, labels=[NEW], average="macro", zero_division=0)
        return float(new), float(f1_score(truth, predicted, average="macro", zero_division=0))

    every = fit(part_a, "every.jsonl")
    champion = fit([r for r in part_a if r["queue"] != NEW], "without.jsonl")
    store = ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=root / "chroma"),
        "tickets",
        embedding_model=static.name,
        dimension=static.dimension,
    )
    unlabelled = [{k: v for k, v in r.items() if k != "queue"} for r in part_b]
    backfill(
        BackfillRequest(write(root / "b.jsonl", unlabelled)),
        pipeline=pipeline(champion),
        store=store,
        model_version=champion,
        progress=False,
    )
    records = store.records([r["ticket_id"] for r in part_b])
    held = [r for r in part_b if layout.awaiting_review(records[r["ticket_id"]].metadata)]
    wrong = [
        r
        for r in part_b
        if not layout.awaiting_review(records[r["ticket_id"]].metadata)
        and records[r["ticket_id"]].metadata["queue"] != r["queue"]
    ]
    answered = (held + wrong)[: args.answers]
    feedback = [
        LabelFeedback(ticket_id=r["ticket_id"], labels={"queue": r["queue"]}, corrected_by="sim")
        for r in answered
    ]
    apply_feedback(store.collection, feedback)
    result = retrain(
        read_store(store.collection),
        RetrainRequest(config=config),
        registry=registry,
        policy=RetrainPolicy(),
        dense_encoder=dense,
    )
    report = {
        "sizes": {"a": args.a, "b": args.b, "c": args.c},
        "answers": len(answered),
        "held": len(held),
        "new_class_answers": sum(r["queue"] == NEW for r in answered),
        "decision": result.decision,
        "reasons": result.reasons,
        "champion (A without the class)": scores(champion),
        "challenger (after retrain)": scores(result.challenger),
        "every label (A)": scores(every),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
