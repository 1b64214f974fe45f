"""Training: split, embed once for all targets, fit, evaluate, register."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from ticketflow.batch.evaluate import evaluate_predictions, predict_rows, review_routing, scored
from ticketflow.data.datasets import LabeledData
from ticketflow.models.classifier import (
    TicketClassifier,
    review_thresholds,
)
from ticketflow.models.classifier import review_gate as served_gate
from ticketflow.models.embedding import Encoder
from ticketflow.models.encoders import encoder_backend, encoder_max_tokens, encoder_sha256
from ticketflow.models.recipe import (
    ModelConfig,
    add_first_stage,
    fit_model,
    out_of_fold_confidence,
    out_of_fold_rows,
    review_precision_of,
)
from ticketflow.models.registry import (
    ModelMetadata,
    ModelRegistry,
    ReviewRouting,
    new_version,
    sha256_file,
)
from ticketflow.models.review import DEFAULT_REVIEW_THRESHOLD
from ticketflow.models.text import build_texts
from ticketflow.monitoring.reference import write_sample_reference
from ticketflow.monitoring.sample import predictions_sample

logger = logging.getLogger(__name__)

_VERSIONED_LIBRARIES = ("scikit-learn", "sentence-transformers", "torch", "numpy", "ticketflow")


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float] | None = None
    review: ReviewRouting | None = None  # what the review cuts let through (also in metadata)


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
    config: ModelConfig | None = None,
    review_precision: float | None = 0.90,
    data_path: Path | None = None,
    make_current: bool = True,
    progress: bool = True,
    reference_dir: Path | None = None,
    reference_size: int = 2_000,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
    static_encoder: Encoder | None = None,
    cascade_agreement: float = 0.97,
    review_precisions: Mapping[str, float] | None = None,
    review_gate: Sequence[str] | None = None,
) -> TrainResult:
    """Split (stratified on the first target), embed once, fit, evaluate on the test part
    and register. ``review_precision``: per-target review thresholds for this precision;
    ``review_precisions``: a precision of their own for some targets
    (REVIEW_PRECISION_BY_TARGET). ``review_gate``: the targets whose review holds a
    ticket (REVIEW_GATE; unset = the first target), stored in the model. What the cuts let
    through, per target and for the gate, out-of-fold and on the test part, is in the
    result and the model's metadata (``review_routing``).

    With ``static_encoder`` the model becomes a cascade (ticketflow.models.cascade): a first
    stage on the static vectors, with escalation thresholds chosen on out-of-fold predictions so the
    first stage keeps only tickets on which it gives the transformer stage's label at least
    ``cascade_agreement`` of the time (ticketflow.models.cascade).
    """
    config = config or ModelConfig()
    targets = list(data.labels)
    if not targets:
        raise ValueError("no targets to train")
    n = len(data.tickets)
    if n < 10:
        raise ValueError(f"only {n} usable rows; need at least 10 to train and evaluate")
    texts = build_texts(data.tickets, max_chars=max_text_chars)
    unused = sorted(set(review_precisions or {}) - set(targets))
    if unused:
        logger.warning("review precision given for %s, which this model does not learn", unused)
    train_idx, test_idx = split_indices(n, data.labels[targets[0]], test_size=test_size, seed=seed)
    logger.info("embedding %d tickets with %s", n, encoder.name)
    started = time.perf_counter()
    vectors = encoder.encode(texts, show_progress=progress)
    embedded = time.perf_counter()
    labels_train = {t: [data.labels[t][i] for i in train_idx] for t in targets}
    labels_test = {t: [data.labels[t][i] for i in test_idx] for t in targets}
    train_texts = [texts[i] for i in train_idx]
    classifier, held_out = fit_model(
        train_texts,
        vectors[np.asarray(train_idx)],
        labels_train,
        config=config,
        review_precision=review_precision,
        seed=seed,
        review_precisions=review_precisions,
        review_gate=review_gate,
    )
    fitted = time.perf_counter()
    seconds = {"embed": embedded - started, "fit": fitted - embedded}
    static: npt.NDArray[np.float32] | None = None
    escalated_share: float | None = None
    if static_encoder is not None:
        static = static_encoder.encode(texts, show_progress=progress)
        escalated_share = add_first_stage(
            classifier,
            held_out,
            train_texts,
            static[np.asarray(train_idx)],
            labels_train,
            config=config,
            agreement=cascade_agreement,
            seed=seed,
        )
        seconds["cascade"] = time.perf_counter() - fitted
    logger.info(
        "embedded in %.1fs, fitted %s in %.1fs", seconds["embed"], config.name, seconds["fit"]
    )

    fingerprint = data_fingerprint(data_path, texts)
    version = new_version(fingerprint, datetime.now(UTC))
    directory = registry.path(version)
    # Scored as served: through the cascade when there is one.
    predictions = predict_rows(
        classifier,
        vectors[np.asarray(test_idx)],
        [texts[i] for i in test_idx],
        static[np.asarray(test_idx)] if static is not None else None,
    )
    metrics = evaluate_predictions(classifier, predictions, labels_test, figure_dir=directory)
    thresholds = review_thresholds(classifier, review_threshold)
    gate = served_gate(classifier)
    precisions = {
        t: review_precision_of(t, review_precision, review_precisions)
        for t in classifier.review_thresholds
    }
    review = review_routing(
        thresholds=thresholds,
        precision_goals=precisions,
        gate=gate,
        out_of_fold=out_of_fold_confidence(classifier, held_out, labels_train),
        test=scored(predictions, labels_test),
    )
    metadata = ModelMetadata(
        version=version,
        created_at=datetime.now(UTC),
        targets=targets,
        labels={t: classifier.labels(t) for t in targets},
        embedding_model=encoder.name,
        embedding_dimension=encoder.dimension,
        embedding_backend=encoder_backend(encoder),
        embedding_max_tokens=encoder_max_tokens(encoder),
        encoder_sha256=encoder_sha256(encoder),
        static_model=static_encoder.name if static_encoder is not None else None,
        static_sha256=getattr(static_encoder, "sha256", None),
        escalation_thresholds=classifier.escalation_thresholds,
        escalated_share=escalated_share,
        max_text_chars=max_text_chars,
        classifier=classifier.description,
        training_config=config.name,
        review_precision=review_precision,
        review_thresholds=classifier.review_thresholds,
        review_precisions={t: p for t, p in precisions.items() if p is not None},
        review_gate=gate,
        review_routing=review,
        train_seconds=seconds,
        library_versions=library_versions(),
        data_path=str(data_path) if data_path else None,
        data_sha256=fingerprint,
        n_train=len(train_idx),
        n_test=len(test_idx),
        n_out_of_fold=out_of_fold_rows(held_out, len(train_idx)),
    )
    # Atomic for the workers: the version becomes current only once every artifact is
    # written, its drift reference included; a failure before that leaves it registered but
    # never served (and the pointer where it was).
    path = registry.save(classifier, metadata, metrics=metrics, make_current=False)
    if reference_dir is not None:
        write_held_out_reference(
            reference_dir,
            version=version,
            classifier=classifier,
            vectors=vectors[np.asarray(test_idx)],
            static_vectors=static[np.asarray(test_idx)] if static is not None else None,
            texts=[texts[i] for i in test_idx],
            languages=[data.tickets[i].language for i in test_idx],
            sample_size=reference_size,
            seed=seed,
            review_threshold=review_threshold,
        )
    if make_current:
        registry.make_trained_current(version)
    return TrainResult(version=version, path=path, metrics=metrics, seconds=seconds, review=review)


def write_held_out_reference(
    reference_dir: Path,
    *,
    version: str,
    classifier: TicketClassifier,
    vectors: npt.NDArray[np.float32],
    texts: Sequence[str],
    languages: Sequence[str | None],
    sample_size: int,
    seed: int,
    static_vectors: npt.NDArray[np.float32] | None = None,
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD,
) -> Path:
    """The drift monitor's reference: what the model says about tickets it was not fit on.

    Held-out rows, because a model is over-confident on its own training rows and the
    monitor would read that gap as confidence drift. A cascade's worker publishes its static
    vectors, so those are the reference vectors then.
    """
    predictions = predict_rows(classifier, vectors, texts, static_vectors)
    if static_vectors is not None and classifier.first_stage is not None:
        vectors = static_vectors
    sample = predictions_sample(
        predictions,
        targets=classifier.targets,
        vectors=vectors,
        texts=texts,
        languages=languages,
        review_thresholds=review_thresholds(classifier, review_threshold),
        review_gate=served_gate(classifier),
    )
    return write_sample_reference(
        reference_dir, model_version=version, sample=sample, sample_size=sample_size, seed=seed
    )
