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
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer

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


# Words whose character n-grams CharNgrams keeps; it starts over when full. A ticket stream's
# words follow Zipf's law: a few thousand words make up most of every ticket.
CHAR_CACHE_WORDS = 32_768


class CharNgrams:
    """A fitted ``char_wb`` :class:`TfidfVectorizer`'s ``transform``, a word at a time.

    scikit-learn's analyzer makes every character n-gram of every word in Python and looks
    each up in the vocabulary, for each ticket again: most of the cost of a ticket's features
    and all of it holding the GIL the worker's other threads need. A ``char_wb`` n-gram never
    crosses a word's edge, so a word's n-grams are the same in every ticket: they are looked up
    once per word and kept (up to ``max_words``), and a ticket's counts are its words'
    columns summed. The counts are the vectorizer's exactly; its own weighting (TF-IDF,
    sublinear tf, L2 norm) is applied to them by a :class:`TfidfTransformer` holding its
    ``idf_``. A unit test checks the rows against ``transform``'s.
    """

    def __init__(self, vectorizer: TfidfVectorizer, *, max_words: int = CHAR_CACHE_WORDS) -> None:
        if vectorizer.analyzer != "char_wb":
            raise ValueError(f"CharNgrams reads char_wb vectorizers, not {vectorizer.analyzer!r}")
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._sizes = range(vectorizer.ngram_range[0], vectorizer.ngram_range[1] + 1)
        self._decode = vectorizer.decode
        self._preprocess = vectorizer.build_preprocessor()
        self._dtype = vectorizer.dtype
        self._weights = TfidfTransformer(
            norm=vectorizer.norm,
            use_idf=vectorizer.use_idf,
            smooth_idf=vectorizer.smooth_idf,
            sublinear_tf=vectorizer.sublinear_tf,
        )
        if vectorizer.use_idf:
            self._weights.idf_ = vectorizer.idf_
        self._max_words = max_words
        self._words: dict[str, list[int]] = {}

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        columns: list[int] = []
        lengths: list[int] = []
        words, known = self._words, self._words.get
        for text in texts:
            start = len(columns)
            for word in self._preprocess(self._decode(text)).split():
                found = known(word)
                if found is None:
                    if len(words) >= self._max_words:
                        words.clear()
                    found = words[word] = self._columns(word)
                columns.extend(found)
            lengths.append(len(columns) - start)
        rows = np.repeat(np.arange(len(texts), dtype=np.int32), lengths)
        counts = sp.csr_matrix(
            (
                np.ones(len(columns), dtype=self._dtype),
                (rows, np.asarray(columns, dtype=np.int32)),
            ),
            shape=(len(texts), len(self._vocabulary)),
        )
        counts.sum_duplicates()  # one entry per (ticket, n-gram): the count
        weighted: sp.csr_matrix = sp.csr_matrix(self._weights.transform(counts, copy=False))
        return weighted

    def _columns(self, word: str) -> list[int]:
        """The vocabulary columns of ``word``'s n-grams, as scikit-learn's ``char_wb``
        analyzer makes them (padded with a space each side; a word shorter than n once)."""
        padded = f" {word} "
        vocabulary = self._vocabulary
        found: list[int] = []
        for n in self._sizes:
            last = max(len(padded) - n, 0)
            for offset in range(last + 1):
                column = vocabulary.get(padded[offset : offset + n])
                if column is not None:
                    found.append(column)
            if last == 0:
                break
        return found


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

    def _char_ngrams(self) -> CharNgrams:
        """The char block's fast transform, made on first use (models pickled before it
        existed have none) and never pickled (:meth:`__getstate__`)."""
        ngrams: CharNgrams | None = self.__dict__.get("_char")
        if ngrams is None:
            if self.char is None:
                raise ValueError(f"features {self.config.name} have no character block")
            ngrams = self.__dict__["_char"] = CharNgrams(self.char)
        return ngrams

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_char", None)  # a cache of words: rebuilt where the model is loaded
        return state

    def shares_text_blocks(self, other: TextFeatures) -> bool:
        """Whether ``other`` reads the very same fitted TF-IDF blocks (see :meth:`fit`)."""
        return self.uses_text and self.word is other.word and self.char is other.char

    def text_blocks(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The sparse (word, char) part of :meth:`transform`'s rows."""
        blocks = [] if self.word is None else [self.word.transform(texts)]
        if self.char is not None:
            blocks.append(self._char_ngrams().transform(texts))
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
