"""Choosing and building the sentence encoder: one backend per process, set by EMBEDDING_BACKEND.

``torch`` is sentence-transformers itself, the reference; ``onnx`` and ``onnx-int8`` run an
export of the same model (:mod:`ticketflow.models.onnx_encoder`) kept next to the model registry,
so the vectors a model was trained on and the ones it is served with come from the same file (its
sha256 is part of the model's metadata).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, cast

from ticketflow.models.embedding import Encoder, SentenceTransformerEncoder
from ticketflow.models.onnx_encoder import (
    ONNX_BACKENDS,
    OnnxEncoder,
    ensure_export,
    load_export,
)

logger = logging.getLogger(__name__)

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")
ENCODERS_DIR = "encoders"  # under the model registry


def encoders_root(registry_dir: Path) -> Path:
    return registry_dir / ENCODERS_DIR


def load_encoder(
    model_name: str,
    backend: Backend,
    *,
    export_root: Path,
    device: str = "cpu",
    batch_size: int = 32,
    threads: int | None = None,
    cache_root: Path | None = None,
    max_tokens: int | None = None,
) -> Encoder:
    """The encoder for (model, backend); ONNX backends export on first use when allowed.

    ``max_tokens``: where texts are cut (None: the model's own ``max_seq_length``).
    An ONNX backend missing under ``export_root`` is exported there first.
    """
    if backend == "torch":
        return SentenceTransformerEncoder(
            model_name,
            device=device,
            batch_size=batch_size,
            threads=threads,
            max_tokens=max_tokens,
        )
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown EMBEDDING_BACKEND {backend!r}; choose one of {BACKENDS}")
    directory = ensure_export(model_name, backend, export_root, cache_root=cache_root)
    return OnnxEncoder(
        directory, batch_size=batch_size, threads=threads, name=model_name, max_tokens=max_tokens
    )


def encoder_sha256(encoder: Encoder) -> str | None:
    """The sha256 of the exported graph behind ``encoder`` (None for torch)."""
    if isinstance(encoder, OnnxEncoder):
        return encoder.manifest.sha256
    inner = getattr(encoder, "encoder", None)  # wrappers such as the text cache
    return encoder_sha256(inner) if inner is not None else None


def encoder_max_tokens(encoder: Encoder) -> int | None:
    """Where ``encoder`` cuts texts, in tokens (None when it cannot tell)."""
    value = getattr(encoder, "max_tokens", None)
    if value is not None:
        return int(value)
    inner = getattr(encoder, "encoder", None)
    return encoder_max_tokens(inner) if inner is not None else None


def encoder_backend(encoder: Encoder) -> Backend:
    if isinstance(encoder, OnnxEncoder):
        return cast(Backend, encoder.backend)
    inner = getattr(encoder, "encoder", None)
    return encoder_backend(inner) if inner is not None else "torch"


__all__ = [
    "BACKENDS",
    "Backend",
    "encoder_backend",
    "encoder_max_tokens",
    "encoder_sha256",
    "encoders_root",
    "load_encoder",
    "load_export",
]
