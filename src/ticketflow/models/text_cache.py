"""A bounded LRU of embeddings by model text: identical tickets are encoded once.

Help desks see the same text again and again (auto-generated alerts, "password reset",
re-sent events after a retry); the key is the exact model text ``build_text`` produced, which
is already whitespace- and length-normalised.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ticketflow.models.embedding import Encoder, FloatMatrix

logger = logging.getLogger(__name__)


class CachedTextEncoder:
    """An :class:`~ticketflow.models.embedding.Encoder` that remembers the last ``max_entries``
    texts."""

    def __init__(self, encoder: Encoder, *, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.encoder = encoder
        self.max_entries = max_entries
        self._entries: OrderedDict[str, FloatMatrix] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for row, text in enumerate(texts):
                vector = self._entries.get(text)
                if vector is None:
                    missing.setdefault(text, []).append(row)
                else:
                    self._entries.move_to_end(text)
                    out[row] = vector
            self.hits += len(texts) - sum(len(rows) for rows in missing.values())
            self.misses += sum(len(rows) for rows in missing.values())
        if missing:
            unique = list(missing)
            vectors = self.encoder.encode(unique, show_progress=show_progress)
            with self._lock:
                for text, vector in zip(unique, vectors, strict=True):
                    out[missing[text]] = vector
                    self._entries[text] = vector
                    self._entries.move_to_end(text)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return out
