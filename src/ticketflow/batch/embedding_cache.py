"""Sentence embeddings cached on disk by (model name, sha256 of the exact text).

Encoding is by far the most expensive step of an experiment run (tens of tickets per second
on a CPU), so every text is encoded once per machine and reruns only read the cache. The
cache lives outside the repository (default ``~/.cache/ticketflow/embeddings``): the data
sets it is built from stay outside the repository too.

Layout: ``<root>/<model slug>/shard-*.npz``, each shard holding ``keys`` (sha256 digests of
the texts) and ``vectors`` (float32, one row per key). Shards are append-only and written
atomically, so an interrupted run keeps what it finished and concurrent runs never corrupt
each other (at worst a text is encoded twice).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ticketflow.data.progress import progress
from ticketflow.models.embedding import Encoder, FloatMatrix
from ticketflow.models.encoders import encoder_backend, encoder_max_tokens

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "ticketflow" / "embeddings"
DEFAULT_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length: the cache's first key space
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class CachedEncoder:
    """An :class:`~ticketflow.models.embedding.Encoder` that reads and fills an on-disk cache."""

    def __init__(self, encoder: Encoder, root: Path = DEFAULT_CACHE_DIR, *, chunk: int = 256):
        self.encoder = encoder
        # One directory per (model, backend): quantised vectors must not answer for fp32 ones.
        backend = encoder_backend(encoder)
        suffix = "" if backend == "torch" else f"--{backend}"
        tokens = encoder_max_tokens(encoder)
        if tokens is not None and tokens != DEFAULT_MAX_TOKENS:
            suffix += f"--t{tokens}"
        self.directory = root / (_SLUG.sub("_", encoder.name) + suffix)
        self.chunk = chunk
        self._memory: dict[bytes, FloatMatrix] | None = None
        self.encoded = 0  # texts actually sent to the encoder by this object
        self.encode_seconds = 0.0

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def _load(self) -> dict[bytes, FloatMatrix]:
        if self._memory is None:
            self._memory = {}
            for shard in sorted(self.directory.glob("shard-*.npz")):
                with np.load(shard) as data:
                    keys, vectors = data["keys"], data["vectors"]
                if vectors.shape[1:] != (self.dimension,):
                    logger.warning("ignoring %s: vectors of shape %s", shard, vectors.shape)
                    continue
                for key, vector in zip(keys, vectors, strict=True):
                    self._memory[bytes(key)] = vector
        return self._memory

    def _write_shard(self, keys: list[bytes], vectors: FloatMatrix) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".shard-", suffix=".npz")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, keys=np.asarray(keys, dtype="S32"), vectors=vectors)
        Path(tmp).replace(self.directory / f"shard-{time.time_ns()}-{os.getpid()}.npz")

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        memory = self._load()
        keys = [text_key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in memory:
                missing[key] = text
        if missing:
            logger.info(
                "%s: %d of %d texts not cached; encoding them",
                self.name,
                len(missing),
                len(texts),
            )
            todo = list(missing.items())
            bar = progress(len(todo), desc=f"embedding ({self.name})", disable=not show_progress)
            for start in range(0, len(todo), self.chunk):
                part = todo[start : start + self.chunk]
                began = time.perf_counter()
                vectors = self.encoder.encode([text for _, text in part])
                self.encode_seconds += time.perf_counter() - began
                self.encoded += len(part)
                # A shard per chunk: an interrupted run keeps everything it finished.
                self._write_shard([key for key, _ in part], vectors)
                for (key, _), vector in zip(part, vectors, strict=True):
                    memory[key] = vector
                bar.update(len(part))
            bar.close()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(np.stack([memory[key] for key in keys]), dtype=np.float32)
