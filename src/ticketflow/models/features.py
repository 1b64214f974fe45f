"""The classifier's input: the ticket embedding next to word and character TF-IDF.

One fitted :class:`TextFeatures` object is part of the model artifact, so training, the
experiment harness and the streaming worker turn a ticket into features with exactly the
same code and the same fitted vocabulary.

Why not the embedding alone: the default encoder is English-only and the tickets are not
(65% of the Bueck set is de/es/fr/pt), and real help-desk text is often keyword lists; word
and character n-grams carry that signal, the embedding carries paraphrase. Every block is
L2-normalised per row, so no block dominates the linear model by scale alone;
``dense_weight`` tilts the balance towards the embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

logger = logging.getLogger(__name__)

# Dense rows for the embedding alone, sparse rows as soon as a TF-IDF block is in.
Features: TypeAlias = npt.NDArray[np.float32] | sp.csr_matrix


@dataclass(frozen=True)
class FeatureConfig:
    """Which blocks make up the features, and how the sparse ones are built."""

    dense: bool = True  # the sentence embedding
    word: bool = True  # word 1-2-gram TF-IDF
    char: bool = True  # character 2-5-gram TF-IDF (within word boundaries)
    dense_weight: float = 1.0
    min_df: int = 2
    max_word_features: int | None = 200_000
    max_char_features: int | None = 300_000

    @property
    def name(self) -> str:
        parts = [
            p for p, on in (("emb", self.dense), ("word", self.word), ("char", self.char)) if on
        ]
        return "+".join(parts)


EMBEDDING_ONLY = FeatureConfig(dense=True, word=False, char=False)
HYBRID = FeatureConfig()


def _min_df(config: FeatureConfig, n_texts: int) -> int:
    # min_df=2 drops typos and ids on real data; on a handful of texts it would drop everything.
    return config.min_df if n_texts >= 50 else 1


class TextFeatures:
    """Fitted feature builder: ``transform(texts, vectors)`` → one row per ticket."""

    def __init__(self, config: FeatureConfig = HYBRID) -> None:
        if not (config.dense or config.word or config.char):
            raise ValueError("a feature configuration needs at least one block")
        self.config = config
        self.word: TfidfVectorizer | None = None
        self.char: TfidfVectorizer | None = None
        self.dimension: int | None = None

    @property
    def uses_text(self) -> bool:
        return self.config.word or self.config.char

    def fit(
        self,
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
        *,
        text_blocks: TextFeatures | None = None,
    ) -> TextFeatures:
        """Fit the TF-IDF blocks on ``texts``, or take ``text_blocks``' fitted ones.

        Taking them (the cascade's two stages, fitted on the same texts) makes the two
        feature sets share one vocabulary, so a ticket's sparse blocks are built once for
        both stages (:meth:`shares_text_blocks`) and stored once in the artifact.
        """
        self.dimension = int(vectors.shape[1]) if self.config.dense else None
        if text_blocks is not None:
            if (text_blocks.config.word, text_blocks.config.char) != (
                self.config.word,
                self.config.char,
            ):
                raise ValueError(
                    f"cannot share the text blocks of {text_blocks.config.name} "
                    f"with {self.config.name}"
                )
            self.word, self.char = text_blocks.word, text_blocks.char
            return self
        min_df = _min_df(self.config, len(texts))
        if self.config.word:
            self.word = TfidfVectorizer(
                ngram_range=(1, 2),
                sublinear_tf=True,
                min_df=min_df,
                max_features=self.config.max_word_features,
                dtype=np.float32,
            ).fit(texts)
        if self.config.char:
            self.char = TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=(2, 5),
                sublinear_tf=True,
                min_df=min_df,
                max_features=self.config.max_char_features,
                dtype=np.float32,
            ).fit(texts)
        logger.info("fitted features %s: %d columns", self.config.name, self.n_features)
        return self

    @property
    def n_features(self) -> int:
        total = self.dimension or 0
        for vectorizer in (self.word, self.char):
            if vectorizer is not None:
                total += len(vectorizer.vocabulary_)
        return total

    def shares_text_blocks(self, other: TextFeatures) -> bool:
        """Whether ``other`` reads the very same fitted TF-IDF blocks (see :meth:`fit`)."""
        return self.uses_text and self.word is other.word and self.char is other.char

    def text_blocks(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The sparse (word, char) part of :meth:`transform`'s rows."""
        blocks = [v.transform(texts) for v in (self.word, self.char) if v is not None]
        stacked: sp.csr_matrix = sp.hstack(blocks, format="csr", dtype=np.float32)
        return stacked

    def transform(
        self,
        texts: Sequence[str] | None,
        vectors: npt.NDArray[np.float32],
        *,
        text_blocks: sp.csr_matrix | None = None,
    ) -> Features:
        """Feature rows; ``text_blocks`` (rows of :meth:`text_blocks`) skips the TF-IDF."""
        dense = np.asarray(vectors, dtype=np.float32) * np.float32(self.config.dense_weight)
        if not self.uses_text:
            return dense
        if text_blocks is None:
            if texts is None:
                raise ValueError(f"features {self.config.name} need the ticket texts")
            if len(texts) != len(vectors):
                raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
            text_blocks = self.text_blocks(texts)
        elif text_blocks.shape[0] != len(vectors):
            raise ValueError(f"{text_blocks.shape[0]} text rows but {len(vectors)} vectors")
        blocks: list[Any] = [text_blocks]
        if self.config.dense:
            blocks.insert(0, sp.csr_matrix(dense))
        stacked: sp.csr_matrix = sp.hstack(blocks, format="csr", dtype=np.float32)
        return stacked
