"""The pure labelling core: tickets in, vectors and predictions out."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.cascade import predict_cascade
from models.classifier import Prediction, TicketClassifier
from models.embedding import Encoder, FloatMatrix
from models.text import build_texts
from models.text_cache import CachedTextEncoder
from schemas import Ticket

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    texts: list[str]
    vectors: FloatMatrix
    predictions: list[dict[str, Prediction]]
    indices: list[int] = field(default_factory=list)  # input position of each result row
    timings: dict[str, float] = field(default_factory=dict)
    # escalated: rows the cascade sent to the transformer; cache_hit / cache_miss: rows
    # the text cache answered / did not (only when the transformer encoder is cached).
    counts: dict[str, int] = field(default_factory=dict)


class LabelingPipeline:
    """Text building, embedding and classification for a batch of tickets.

    With a cascade model (``classifier.first_stage``) and a ``static_encoder``, every ticket
    gets the static embedding and only the unsure ones the transformer's; the vectors
    returned (for the vector store and the monitor) are then the static ones, so each space
    holds one model's vectors only. :attr:`vector_model` names that model.
    """

    def __init__(
        self,
        encoder: Encoder,
        classifier: TicketClassifier,
        *,
        max_text_chars: int,
        static_encoder: Encoder | None = None,
    ) -> None:
        if classifier.first_stage is not None and static_encoder is None:
            raise ValueError("a cascade model needs the static encoder it was trained with")
        self.encoder = encoder
        self.classifier = classifier
        self.max_text_chars = max_text_chars
        self.static_encoder = static_encoder if classifier.first_stage is not None else None

    @property
    def vector_model(self) -> str:
        """The model whose vectors :meth:`run` returns."""
        return (self.static_encoder or self.encoder).name

    @property
    def dimension(self) -> int:
        return (self.static_encoder or self.encoder).dimension

    def review_thresholds(self, default: float) -> dict[str, float]:
        """Per-target review thresholds: the model's own where it has them, else ``default``."""
        own: dict[str, float] = getattr(self.classifier, "review_thresholds", None) or {}
        return {target: float(own.get(target, default)) for target in self.classifier.targets}

    def run(self, tickets: Sequence[Ticket]) -> BatchResult:
        if self.static_encoder is not None:
            return self._run_cascade(tickets, self.static_encoder)
        started = time.perf_counter()
        texts = build_texts(tickets, max_chars=self.max_text_chars)
        before = self._cache_counts()
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
            counts=self._cache_delta(before),
        )

    def _run_cascade(self, tickets: Sequence[Ticket], static_encoder: Encoder) -> BatchResult:
        first_stage = self.classifier.first_stage
        assert first_stage is not None  # checked by run()
        started = time.perf_counter()
        texts = build_texts(tickets, max_chars=self.max_text_chars)
        before = self._cache_counts()
        static = static_encoder.encode(texts)
        dense_seconds = 0.0

        def dense(rows: list[int]) -> FloatMatrix:
            nonlocal dense_seconds
            begun = time.perf_counter()
            vectors = self.encoder.encode([texts[i] for i in rows])
            dense_seconds += time.perf_counter() - begun
            return vectors

        static_done = time.perf_counter()
        outcome = predict_cascade(
            first_stage,
            self.classifier,
            self.classifier.escalation_thresholds,
            texts=texts,
            static_vectors=static,
            dense_vectors=dense,
        )
        done = time.perf_counter()
        counts = self._cache_delta(before)
        counts["escalated"] = int(outcome.escalated.sum())
        return BatchResult(
            texts=texts,
            vectors=np.asarray(static, dtype=np.float32),
            predictions=outcome.predictions,
            indices=list(range(len(tickets))),
            timings={
                "embed": static_done - started + dense_seconds,
                "classify": done - static_done - dense_seconds,
            },
            counts=counts,
        )

    def _cache_counts(self) -> tuple[int, int] | None:
        if isinstance(self.encoder, CachedTextEncoder):
            return self.encoder.hits, self.encoder.misses
        return None

    def _cache_delta(self, before: tuple[int, int] | None) -> dict[str, int]:
        after = self._cache_counts()
        if before is None or after is None:
            return {}
        return {"cache_hit": after[0] - before[0], "cache_miss": after[1] - before[1]}

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
        dimension = self.dimension
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
                counts={
                    k: sum(p.counts.get(k, 0) for p in parts)
                    for k in {k for p in parts for k in p.counts}
                },
            ),
            failures,
        )
