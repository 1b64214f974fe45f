"""The protocol's rows: a stable stratified subsample, embedded once through the cache."""

from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from ticketflow.batch import experiments
from ticketflow.batch.embedding_cache import CachedEncoder


@pytest.mark.unit
def test_subsample_is_stratified_and_stable() -> None:
    labels = ["x"] * 80 + ["y"] * 20
    chosen = experiments.subsample_indices(labels, 50)
    assert chosen == sorted(chosen) == experiments.subsample_indices(labels, 50)
    assert sum(labels[i] == "y" for i in chosen) == 10
    assert experiments.subsample_indices(labels, 500) == list(range(100))


@pytest.mark.unit
def test_embedding_cache_encodes_each_text_once(tmp_path: Path) -> None:
    cached = CachedEncoder(HashingEncoder(), tmp_path)
    first = cached.encode(["a b", "c d", "a b"])
    assert cached.encoded == 2
    again = CachedEncoder(HashingEncoder(), tmp_path)  # a new process: read from disk
    second = again.encode(["c d", "a b"])
    assert again.encoded == 0
    assert (second == first[[1, 0]]).all()
