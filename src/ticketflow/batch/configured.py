"""Batch jobs' resources as configured: labelled data, the training encoder, the static model.

Entry points (the CLI, the k8s Jobs) call these with their settings; the training and
evaluation code itself takes the objects, never the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from ticketflow.batch.train import split_indices
from ticketflow.config import Settings
from ticketflow.data.datasets import DEFAULT_ENCODING, ColumnMapping, LabeledData, load_labeled
from ticketflow.models.embedding import Encoder
from ticketflow.models.encoders import Backend, encoders_root, load_encoder
from ticketflow.models.finetune import (
    FinetuneConfig,
    FinetuneResult,
    finetune_encoder,
    finetuned_dir_name,
)
from ticketflow.models.static_encoder import StaticEncoder, ensure_static
from ticketflow.models.text import build_texts

logger = logging.getLogger(__name__)

FROM_SETTINGS = -1  # encoder(max_tokens=...): EMBEDDING_MAX_TOKENS


def load_data(
    settings: Settings,
    path: Path,
    *,
    targets: Sequence[str],
    mapping: ColumnMapping,
    limit: int | None = None,
    encoding: str = DEFAULT_ENCODING,
    partial: bool = False,
) -> LabeledData:
    """A labelled file, validated with the configured field limits; skipped rows logged.
    ``partial``: keep rows that lack some targets' labels (:func:`load_labeled`)."""
    data = load_labeled(
        path,
        targets=targets,
        mapping=mapping,
        limits=settings.field_limits,
        limit=limit,
        encoding=encoding,
        partial=partial,
    )
    for row, reason in data.skipped[:20]:
        logger.warning("skipped row %d: %s", row, reason)
    if data.skipped:
        logger.warning("skipped %d rows in total", len(data.skipped))
    return data


def encoder(
    settings: Settings,
    model_name: str | None = None,
    *,
    backend: str | None = None,
    max_tokens: int | None = FROM_SETTINGS,
) -> Encoder:
    """The encoder of ``backend`` (default EMBEDDING_BACKEND); ONNX exports are made once
    and kept next to the models (``MODEL_REGISTRY_DIR/encoders``)."""
    return load_encoder(
        model_name or settings.embedding_model,
        cast(Backend, backend or settings.embedding_backend),
        export_root=encoders_root(settings.model_registry_dir),
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
        cache_root=settings.cache_dir / "encoders",
        max_tokens=settings.embedding_max_tokens if max_tokens == FROM_SETTINGS else max_tokens,
    )


def static_encoder(settings: Settings, model_name: str | None = None) -> StaticEncoder:
    """The cascade's static model, distilled once from the transformer (``CASCADE=on``)."""
    source = model_name or settings.embedding_model
    directory = ensure_static(
        source,
        encoders_root(settings.model_registry_dir),
        cache_root=settings.cache_dir / "encoders",
    )
    return StaticEncoder(directory, source_model=source)


def finetuned_encoder(
    settings: Settings,
    data: LabeledData,
    *,
    test_size: float,
    seed: int,
    config: FinetuneConfig | None = None,
    show_progress: bool = True,
) -> FinetuneResult:
    """EMBEDDING_MODEL fine-tuned on the training part of ``data`` (the split ``train`` makes
    with the same ``test_size`` and ``seed``, so the test part stays unseen), saved under
    ``MODEL_REGISTRY_DIR/encoders`` where the ONNX export and the static model are made from it.
    """
    texts = build_texts(data.tickets, max_chars=settings.max_text_chars)
    targets = list(data.labels)
    train_rows, _ = split_indices(
        len(texts), data.labels[targets[0]], test_size=test_size, seed=seed
    )
    train_texts = [texts[i] for i in train_rows]
    labels = {t: [data.labels[t][i] for i in train_rows] for t in targets}
    config = config or FinetuneConfig(max_tokens=settings.embedding_max_tokens or 256)
    name = finetuned_dir_name(settings.embedding_model, train_texts, labels, config)
    return finetune_encoder(
        settings.embedding_model,
        train_texts,
        labels,
        encoders_root(settings.model_registry_dir) / name,
        config=config,
        device=None if settings.embedding_device == "cpu" else settings.embedding_device,
        threads=settings.torch_threads,
        show_progress=show_progress,
    )
