"""Small real collaborators for unit tests (no model download, no services)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.schemas.incident import IncidentEvent, IncidentStatus


class HashingEncoder:
    """A cheap, deterministic Encoder: hashed word and character n-grams, L2-normalised.

    It satisfies the same protocol as the sentence-transformers encoder, so unit tests run
    the real pipeline code in milliseconds; integration tests use the real model.
    """

    def __init__(self, dimension: int = 256, name: str = "test/hashing") -> None:
        self._vectorizer = HashingVectorizer(
            n_features=dimension, analyzer="char_wb", ngram_range=(2, 4), norm="l2"
        )
        self._dimension = dimension
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        matrix = self._vectorizer.transform(list(texts)).toarray()
        return np.asarray(matrix, dtype=np.float32)


def open_store(tmp_path: Path, pipeline: LabelingPipeline) -> ChromaVectorStore:
    """An embedded ChromaDB under ``tmp_path`` for ``pipeline``'s vectors."""
    return ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
        "tickets",
        embedding_model=pipeline.vector_model,
        dimension=pipeline.dimension,
    )


def incident_event(
    incident_id: str,
    status: IncidentStatus,
    members: list[str],
    *,
    start: datetime,
    terms: Sequence[str],
    labels: Mapping[str, Mapping[str, int]],
    representative: str | None = None,
    minutes: int | None = None,
) -> IncidentEvent:
    """An incident as the worker publishes it: ``members`` in arrival order, the last one
    detected it, seen from ``start`` for ``minutes`` (default: one per member)."""
    return IncidentEvent(
        incident_id=incident_id,
        status=status,
        member_ticket_ids=members,
        size=len(members),
        first_seen=start,
        last_seen=start + timedelta(minutes=len(members) if minutes is None else minutes),
        representative_ticket_id=representative or members[0],
        top_terms=list(terms),
        label_counts={t: dict(c) for t, c in labels.items()},
        detected_by_ticket_id=members[-1],
        neighbours_at_detection=len(members) - 1,
        expected_at_detection=0.25,
    )
