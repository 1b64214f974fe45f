"""Hybrid features: the same fitted object turns texts + vectors into rows, train and serve."""

import numpy as np
import pytest
import scipy.sparse as sp

from tests.helpers import HashingEncoder
from ticketflow.models.features import EMBEDDING_ONLY, HYBRID, FeatureConfig, TextFeatures

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
