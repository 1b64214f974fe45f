import numpy as np
import pytest

from tests.helpers import HashingEncoder
from ticketflow.models.text_cache import CachedTextEncoder

pytestmark = pytest.mark.unit


class CountingEncoder(HashingEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts, *, show_progress=False):  # type: ignore[no-untyped-def]
        self.seen.extend(texts)
        return super().encode(texts)


def test_repeated_texts_are_encoded_once_and_vectors_are_identical() -> None:
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, max_entries=10)
    first = cached.encode(["a printer", "vpn down", "a printer"])
    second = cached.encode(["vpn down", "new text"])
    assert inner.seen == ["a printer", "vpn down", "new text"]
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(second[0], first[1])
    np.testing.assert_array_equal(second, inner.encode(["vpn down", "new text"]))
    assert (cached.hits, cached.misses) == (1, 4)


def test_least_recently_used_text_is_evicted_first() -> None:
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, max_entries=2)
    cached.encode(["a", "b"])
    cached.encode(["a"])  # b is now the least recently used
    cached.encode(["c"])
    inner.seen.clear()
    cached.encode(["a", "b", "c"])
    assert inner.seen == ["b"]


def test_empty_batch_and_bad_size() -> None:
    cached = CachedTextEncoder(HashingEncoder(), max_entries=1)
    assert cached.encode([]).shape == (0, 256)
    with pytest.raises(ValueError):
        CachedTextEncoder(HashingEncoder(), max_entries=0)
