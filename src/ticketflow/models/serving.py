"""Serving: a registered model on the encoders it was trained with, as a labelling pipeline.

The worker, its hot reload, ``ticketflow drift reference`` and the benchmarks all build their
pipeline here, so what is served is what was trained.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from ticketflow.models.embedding import Encoder, FloatMatrix
from ticketflow.models.encoders import (
    Backend,
    encoder_backend,
    encoder_max_tokens,
    encoder_sha256,
    encoders_root,
    load_encoder,
)
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import LoadedModel, ModelMetadata, ModelVerificationError
from ticketflow.models.static_encoder import StaticEncoder, distill_dir_name
from ticketflow.models.text_cache import CachedTextEncoder


class ServingEncoders:
    """The encoders of one worker process: the transformer (as an :class:`Encoder`, so the
    hot-reload code can treat it as one) plus the cascade's static model, loaded on demand.

    It also pins what the process was started with: the backend and the exported graph of
    the transformer, and the vector space written to the vector store; a model that needs
    anything else is refused by :meth:`check`, so a hot swap can never mix vector spaces.
    """

    def __init__(self, dense: Encoder, *, registry_dir: Path) -> None:
        self.dense = dense
        self.registry_dir = registry_dir
        self.backend: Backend = encoder_backend(dense)
        self.dense_sha256 = encoder_sha256(dense)
        self.max_tokens = encoder_max_tokens(dense)
        self.vector_model: str | None = None  # set once the first pipeline is built
        self._static: dict[str, StaticEncoder] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.dense.name

    @property
    def dimension(self) -> int:
        return self.dense.dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        return self.dense.encode(texts, show_progress=show_progress)

    def check(self, metadata: ModelMetadata) -> None:
        """Raise :class:`ModelVerificationError` when ``metadata`` cannot run on these encoders."""
        problems = []
        if metadata.embedding_model != self.dense.name:
            problems.append(f"embedding model {metadata.embedding_model!r} != {self.dense.name!r}")
        if metadata.embedding_backend != self.backend:
            problems.append(f"backend {metadata.embedding_backend!r} != {self.backend!r}")
        elif self.dense_sha256 and metadata.encoder_sha256 != self.dense_sha256:
            problems.append(
                f"encoder graph sha256 {(metadata.encoder_sha256 or 'none')[:12]} != "
                f"{self.dense_sha256[:12]} (exported again since training?)"
            )
        if (
            metadata.embedding_max_tokens is not None
            and self.max_tokens is not None
            and metadata.embedding_max_tokens != self.max_tokens
        ):
            problems.append(f"max tokens {metadata.embedding_max_tokens} != {self.max_tokens}")
        if self.vector_model is not None and metadata.vector_model != self.vector_model:
            problems.append(
                f"its vectors are {metadata.vector_model!r}, the vector store holds "
                f"{self.vector_model!r}"
            )
        if problems:
            raise ModelVerificationError(
                f"model {metadata.version} does not fit this worker: " + "; ".join(problems)
            )

    def static_for(self, metadata: ModelMetadata) -> StaticEncoder | None:
        if metadata.static_model is None:
            return None
        with self._lock:
            encoder = self._static.get(metadata.static_model)
            if encoder is None:
                directory = encoders_root(self.registry_dir) / distill_dir_name(
                    metadata.embedding_model
                )
                if not directory.is_dir():
                    raise ModelVerificationError(
                        f"model {metadata.version} needs the static model in {directory}, "
                        "which training writes next to the models; copy the registry whole"
                    )
                encoder = StaticEncoder(directory, source_model=metadata.embedding_model)
                self._static[metadata.static_model] = encoder
        if encoder.sha256 != metadata.static_sha256:
            raise ModelVerificationError(
                f"model {metadata.version}: static model sha256 {encoder.sha256[:12]} != "
                f"{(metadata.static_sha256 or 'none')[:12]}"
            )
        return encoder


def make_pipeline(encoder: Encoder, model: LoadedModel) -> LabelingPipeline:
    """The serving pipeline of ``model`` on the already-loaded ``encoder``.

    The one place that turns a verified model into a pipeline: the worker's start and its hot
    reload (ticketflow.stream.reload) both call it. With :class:`ServingEncoders` (the worker) the
    model is checked against the process's backend and vector space first.
    """
    static = None
    dense = encoder
    if isinstance(encoder, ServingEncoders):
        encoder.check(model.metadata)
        static = encoder.static_for(model.metadata)
        dense = encoder.dense
    pipeline = LabelingPipeline(
        dense,
        model.classifier,
        max_text_chars=model.metadata.max_text_chars,
        static_encoder=static,
    )
    if isinstance(encoder, ServingEncoders) and encoder.vector_model is None:
        encoder.vector_model = pipeline.vector_model
    return pipeline


def serving_encoders(
    metadata: ModelMetadata,
    *,
    registry_dir: Path,
    cache_dir: Path,
    device: str = "cpu",
    batch_size: int = 16,
    threads: int | None = None,
    text_cache_size: int = 0,
) -> ServingEncoders:
    """The encoders ``metadata``'s model was trained with: model, backend, token cut.
    ``text_cache_size``: embeddings kept by model text (0 = no cache)."""
    dense: Encoder = load_encoder(
        metadata.embedding_model,
        cast(Backend, metadata.embedding_backend),
        export_root=encoders_root(registry_dir),
        device=device,
        batch_size=batch_size,
        threads=threads,
        cache_root=cache_dir / "encoders",
        max_tokens=metadata.embedding_max_tokens,
    )
    if text_cache_size > 0:
        dense = CachedTextEncoder(dense, max_entries=text_cache_size)
    return ServingEncoders(dense, registry_dir=registry_dir)
