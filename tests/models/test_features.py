"""Hybrid features: the same fitted object turns texts + vectors into rows, train and serve."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from tests.helpers import HashingEncoder
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.features import (
    EMBEDDING_ONLY,
    HYBRID,
    CharNgrams,
    FeatureConfig,
    TextFeatures,
)

pytestmark = pytest.mark.unit

TEXTS = ["refund my invoice", "printer does not print", "Rechnung erstattet", "vpn is down"]


def test_hybrid_blocks_are_stacked_and_deterministic() -> None:
    vectors = HashingEncoder(dimension=32).encode(TEXTS)
    features = TextFeatures(HYBRID).fit(TEXTS, vectors)
    matrix = features.transform(TEXTS, vectors)
    assert sp.issparse(matrix)
    assert matrix.shape == (4, features.n_features)
    assert features.n_features > 32  # embedding + word + char columns
    # The first block is the embedding, unchanged at weight 1.
    np.testing.assert_allclose(matrix[:, :32].toarray(), vectors, rtol=1e-6)
    again = features.transform(TEXTS, vectors)
    assert (matrix != again).nnz == 0


def test_dense_weight_scales_the_embedding_block() -> None:
    vectors = HashingEncoder(dimension=16).encode(TEXTS)
    config = FeatureConfig(dense_weight=2.0)
    matrix = TextFeatures(config).fit(TEXTS, vectors).transform(TEXTS, vectors)
    np.testing.assert_allclose(matrix[:, :16].toarray(), 2 * vectors, rtol=1e-6)


def test_text_blocks_need_the_texts_and_matching_rows() -> None:
    vectors = HashingEncoder(dimension=16).encode(TEXTS)
    features = TextFeatures(HYBRID).fit(TEXTS, vectors)
    with pytest.raises(ValueError, match="need the ticket texts"):
        features.transform(None, vectors)
    with pytest.raises(ValueError, match="3 texts but 4 vectors"):
        features.transform(TEXTS[:3], vectors)


def test_embedding_only_is_the_vector_itself() -> None:
    vectors = HashingEncoder(dimension=16).encode(TEXTS)
    features = TextFeatures(EMBEDDING_ONLY).fit(TEXTS, vectors)
    assert not features.uses_text
    np.testing.assert_array_equal(features.transform(None, vectors), vectors)


def test_no_block_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one block"):
        TextFeatures(FeatureConfig(dense=False, word=False, char=False))


# Whitespace of every kind, a word shorter than the n-grams, accents, another script, markup.
AWKWARD = [
    "a  b\t\tc\n\nd \u00a0e\u3000f\x1cg",
    "Ärger mit der Überweisung   ÉCHEC de paiement",
    "I",
    "",
    "   ",
    "Сервер недоступен <b>VPN</b> x",
    "ok\r\nRechnung  #4711 https://example.com/a?b=c",
]


def sample_texts(n: int) -> list[str]:
    rows = generate_tickets(n, seed=3)
    return [f"{r['subject'] or ''}\n{r['body']}" for r in rows]


def assert_same_rows(ours: sp.csr_matrix, theirs: sp.csr_matrix) -> None:
    theirs = sp.csr_matrix(theirs)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)


@pytest.mark.parametrize("max_words", [32_768, 5])
def test_char_ngrams_give_the_vectorizers_rows_exactly(max_words: int) -> None:
    train = sample_texts(300) + AWKWARD
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, dtype=np.float32
    ).fit(train)
    ngrams = CharNgrams(vectorizer, max_words=max_words)
    for texts in (sample_texts(120)[60:], AWKWARD, train[:50]):
        assert_same_rows(ngrams.transform(texts), vectorizer.transform(texts))


def test_char_ngrams_follow_the_vectorizers_own_settings() -> None:
    texts = sample_texts(80) + AWKWARD
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(1, 3), lowercase=False, strip_accents="unicode"
    ).fit(texts)
    assert_same_rows(CharNgrams(vectorizer).transform(texts), vectorizer.transform(texts))
    with pytest.raises(ValueError, match="char_wb"):
        CharNgrams(TfidfVectorizer().fit(texts))


def test_the_char_block_is_the_fitted_vectorizers_and_its_cache_is_not_pickled() -> None:
    texts = sample_texts(100)
    vectors = HashingEncoder(dimension=8).encode(texts)
    features = TextFeatures(HYBRID).fit(texts, vectors)
    assert features.char is not None and features.word is not None
    expected = sp.hstack(
        [features.word.transform(texts), features.char.transform(texts)], format="csr"
    )
    assert_same_rows(features.text_blocks(texts), expected)
    assert "_char" in features.__dict__  # made on first use
    loaded = pickle.loads(pickle.dumps(features))
    assert "_char" not in loaded.__dict__
    assert_same_rows(loaded.text_blocks(texts), expected)
