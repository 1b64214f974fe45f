"""The pure labelling core: tickets in, vectors and predictions out."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.classifier import Prediction, TicketClassifier
from models.embedding import Encoder, FloatMatrix
from models.text import build_texts
from schemas import Ticket

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    texts: list[str]
    vectors: FloatMatrix
    predictions: list[dict[str, Prediction]]
    indices: list[int] = field(default_factory=list)  # input position of each result row
    timings: dict[str, float] = field(default_factory=dict)


class LabelingPipeline:
    """Text building, embedding and classification for a batch of tickets."""

    def __init__(
        self, encoder: Encoder, classifier: TicketClassifier, *, max_text_chars: int
    ) -> None:
        self.encoder = encoder
        self.classifier = classifier
        self.max_text_chars = max_text_chars

    def review_thresholds(self, default: float) -> dict[str, float]:
        """Per-target review thresholds: the model's own where it has them, else ``default``."""
        own: dict[str, float] = getattr(self.classifier, "review_thresholds", None) or {}
        return {target: float(own.get(target, default)) for target in self.classifier.targets}

    def run(self, tickets: Sequence[Ticket]) -> BatchResult:
        started = time.perf_counter()
        texts = build_texts(tickets, max_chars=self.max_text_chars)
        vectors = self.encoder.encode(texts)
        embedded = time.perf_counter()
        predictions: list[dict[str, Prediction]] = []
        if len(vectors) and self.classifier.uses_text:
            # The TF-IDF blocks read the same model text the encoder saw, built once above.
            predictions = self.classifier.predict(vectors, texts)
        elif len(vectors):
            # Embedding-only models (and subclasses written for them) take the vectors alone.
            predictions = self.classifier.predict(vectors)
        done = time.perf_counter()
        return BatchResult(
            texts=texts,
            vectors=np.asarray(vectors, dtype=np.float32),
            predictions=predictions,
            indices=list(range(len(tickets))),
            timings={"embed": embedded - started, "classify": done - embedded},
        )

    def run_isolating(
        self, tickets: Sequence[Ticket]
    ) -> tuple[BatchResult, list[tuple[int, BaseException]]]:
        """Like :meth:`run`, but one poisonous ticket cannot fail the others.

        The batch runs whole first (the fast path); only when it raises is each ticket
        retried alone, and the ones that still raise are returned as failures.
        """
        try:
            return self.run(tickets), []
        except Exception:
            logger.exception("batch of %d failed; retrying ticket by ticket", len(tickets))
        parts: list[BatchResult] = []
        failures: list[tuple[int, BaseException]] = []
        for index, ticket in enumerate(tickets):
            try:
                single = self.run([ticket])
            except Exception as exc:
                failures.append((index, exc))
                continue
            single.indices = [index]
            parts.append(single)
        dimension = self.encoder.dimension
        return (
            BatchResult(
                texts=[t for p in parts for t in p.texts],
                vectors=(
                    np.vstack([p.vectors for p in parts])
                    if parts
                    else np.zeros((0, dimension), dtype=np.float32)
                ),
                predictions=[x for p in parts for x in p.predictions],
                indices=[i for p in parts for i in p.indices],
            ),
            failures,
        )
