"""The pure labelling core: tickets in, vectors and predictions out."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ticketflow.models.cascade import FirstStageOutcome, predict_first_stage, predict_second_stage
from ticketflow.models.classifier import Prediction, TicketClassifier
from ticketflow.models.embedding import Encoder, FloatMatrix
from ticketflow.models.text import build_texts
from ticketflow.models.text_cache import CachedTextEncoder
from ticketflow.schemas import Ticket

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


@dataclass
class PreparedBatch:
    """A batch after :meth:`LabelingPipeline.prepare`, waiting for the transformer."""

    texts: list[str]
    text_blocks: sp.csr_matrix | None = None  # TF-IDF rows (no cascade)
    static_vectors: FloatMatrix | None = None  # with a cascade: every row's static vector
    first: FirstStageOutcome | None = None  # with a cascade: its first stage's decisions
    timings: dict[str, float] = field(default_factory=dict)


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

    def run(self, tickets: Sequence[Ticket]) -> BatchResult:
        return self.finish(self.prepare(tickets))

    def prepare(self, tickets: Sequence[Ticket]) -> PreparedBatch:
        """The first half of :meth:`run`: texts, TF-IDF rows and, with a cascade, the first
        stage. Python-bound; the worker runs it for the next batch on its own thread while
        :meth:`finish` runs the transformer (which releases the GIL) for this one."""
        started = time.perf_counter()
        texts = build_texts(tickets, max_chars=self.max_text_chars)
        first_stage = self.classifier.first_stage
        if self.static_encoder is None or first_stage is None:
            features = self.classifier.features
            blocks = features.text_blocks(texts) if features and features.uses_text else None
            return PreparedBatch(
                texts=texts, text_blocks=blocks, timings={"classify": time.perf_counter() - started}
            )
        static = self.static_encoder.encode(texts)
        static_done = time.perf_counter()
        first = predict_first_stage(
            first_stage,
            self.classifier,
            self.classifier.escalation_thresholds,
            texts=texts,
            static_vectors=static,
        )
        return PreparedBatch(
            texts=texts,
            static_vectors=static,
            first=first,
            timings={
                "embed": static_done - started,
                "classify": time.perf_counter() - static_done,
            },
        )

    def finish(self, prepared: PreparedBatch) -> BatchResult:
        """The second half of :meth:`run`: the transformer and the head(s) reading it."""
        texts = prepared.texts
        before = self._cache_counts()
        started = time.perf_counter()
        if prepared.first is None:
            vectors = self.encoder.encode(texts)
            embedded = time.perf_counter()
            predictions: list[dict[str, Prediction]] = []
            if len(vectors) and self.classifier.uses_text:
                # The TF-IDF blocks read the same model text the encoder saw, built once.
                predictions = self.classifier.predict(
                    vectors, texts, text_blocks=prepared.text_blocks
                )
            elif len(vectors):
                # Embedding-only models (and subclasses written for them) take the vectors.
                predictions = self.classifier.predict(vectors)
            embed, escalated = embedded - started, None
        else:
            assert prepared.static_vectors is not None  # set with first by prepare()
            embed = 0.0

            def dense(rows: list[int]) -> FloatMatrix:
                nonlocal embed
                begun = time.perf_counter()
                dense_vectors = self.encoder.encode([texts[i] for i in rows])
                embed += time.perf_counter() - begun
                return dense_vectors

            outcome = predict_second_stage(
                self.classifier, prepared.first, texts=texts, dense_vectors=dense
            )
            vectors, predictions = prepared.static_vectors, outcome.predictions
            escalated = int(outcome.escalated.sum())
        took = time.perf_counter() - started
        timings = dict(prepared.timings)
        timings["embed"] = timings.get("embed", 0.0) + embed
        timings["classify"] = timings.get("classify", 0.0) + took - embed
        counts = self._cache_delta(before)
        if escalated is not None:
            counts["escalated"] = escalated
        return BatchResult(
            texts=texts,
            vectors=np.asarray(vectors, dtype=np.float32),
            predictions=predictions,
            indices=list(range(len(texts))),
            timings=timings,
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

    def run_each(
        self, tickets: Sequence[Ticket]
    ) -> tuple[BatchResult, list[tuple[int, BaseException]]]:
        """Each ticket alone, so one poisonous ticket cannot fail the others: the results of
        those that ran, and the ``(index, error)`` of those that raised."""
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
