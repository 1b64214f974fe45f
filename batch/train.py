"""Training: split, embed once for all targets, fit, evaluate, register."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from batch.evaluate import evaluate_classifier
from models.classifier import TicketClassifier
from models.datasets import LabeledData
from models.embedding import Encoder
from models.registry import ModelMetadata, ModelRegistry, new_version, sha256_file
from models.text import build_texts

logger = logging.getLogger(__name__)

_VERSIONED_LIBRARIES = ("scikit-learn", "sentence-transformers", "torch", "numpy", "ticketflow")


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, dict[str, Any]]


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def stratify_labels(labels: Sequence[str]) -> Sequence[str] | None:
    """Stratify when every class can appear on both sides of the split."""
    counts = Counter(labels)
    return labels if min(counts.values()) >= 2 else None


def split_indices(
    n: int, labels: Sequence[str], *, test_size: float, seed: int
) -> tuple[list[int], list[int]]:
    indices = list(range(n))
    train, test = train_test_split(
        indices, test_size=test_size, random_state=seed, stratify=stratify_labels(labels)
    )
    return list(train), list(test)


def data_fingerprint(path: Path | None, texts: Sequence[str]) -> str:
    if path is not None and path.is_file():
        return sha256_file(path)
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def train(
    data: LabeledData,
    *,
    encoder: Encoder,
    registry: ModelRegistry,
    max_text_chars: int,
    test_size: float = 0.2,
    seed: int = 42,
    c: float = 10.0,
    data_path: Path | None = None,
    make_current: bool = True,
    progress: bool = True,
) -> TrainResult:
    targets = list(data.labels)
    if not targets:
        raise ValueError("no targets to train")
    n = len(data.tickets)
    if n < 10:
        raise ValueError(f"only {n} usable rows; need at least 10 to train and evaluate")
    texts = build_texts(data.tickets, max_chars=max_text_chars)
    train_idx, test_idx = split_indices(n, data.labels[targets[0]], test_size=test_size, seed=seed)
    logger.info("embedding %d tickets with %s", n, encoder.name)
    vectors = encoder.encode(texts, show_progress=progress)
    labels_train = {t: [data.labels[t][i] for i in train_idx] for t in targets}
    labels_test = {t: [data.labels[t][i] for i in test_idx] for t in targets}
    classifier = TicketClassifier.fit(vectors[np.asarray(train_idx)], labels_train, c=c, seed=seed)

    fingerprint = data_fingerprint(data_path, texts)
    version = new_version(fingerprint, datetime.now(UTC))
    directory = registry.path(version)
    metrics = evaluate_classifier(
        classifier, vectors[np.asarray(test_idx)], labels_test, figure_dir=directory
    )
    metadata = ModelMetadata(
        version=version,
        created_at=datetime.now(UTC),
        targets=targets,
        labels={t: classifier.labels(t) for t in targets},
        embedding_model=encoder.name,
        embedding_dimension=encoder.dimension,
        max_text_chars=max_text_chars,
        library_versions=library_versions(),
        data_path=str(data_path) if data_path else None,
        data_sha256=fingerprint,
        n_train=len(train_idx),
        n_test=len(test_idx),
    )
    path = registry.save(classifier, metadata, metrics=metrics, make_current=make_current)
    return TrainResult(version=version, path=path, metrics=metrics)
