"""Small real collaborators for unit tests (no model download, no services)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.models.embedding import FloatMatrix
from ticketflow.models.pipeline import LabelingPipeline


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
