"""Training: split, embed once for all targets, fit, evaluate, register."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from batch.evaluate import evaluate_classifier
from models.classifier import (
    TicketClassifier,
    apply_temperature,
    fit_temperature,
    head_logits,
    new_head,
    threshold_for_precision,
)
from models.datasets import LabeledData
from models.embedding import Encoder
from models.features import EMBEDDING_ONLY, HYBRID, FeatureConfig, Features, TextFeatures
from models.registry import ModelMetadata, ModelRegistry, new_version, sha256_file
from models.text import build_texts
from monitoring.reference import write_reference

logger = logging.getLogger(__name__)

_VERSIONED_LIBRARIES = ("scikit-learn", "sentence-transformers", "torch", "numpy", "ticketflow")


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float] | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a trainable model besides the encoder.

    The defaults are the winner of ``ticketflow experiments`` (docs/model-quality.md).
    """

    features: FeatureConfig = HYBRID
    c: float = 3.0
    class_weight: str | None = "balanced"
    calibrate: bool = True  # temperature scaling on out-of-fold predictions
    cv_folds: int = 5  # out-of-fold predictions for calibration and review thresholds
    max_iter: int = 2_000

    @property
    def name(self) -> str:
        weight = "bal" if self.class_weight else "none"
        calibrated = "+T" if self.calibrate else ""
        sparse = self.features.word or self.features.char
        dense = f"x{self.features.dense_weight:g}" if sparse and self.features.dense else ""
        return f"lr[{self.features.name}{dense}] C={self.c:g} {weight}{calibrated}"


EMBEDDING_LR = ModelConfig(features=EMBEDDING_ONLY, c=10.0, calibrate=False)  # the original model


@dataclass
class OutOfFold:
    """Held-out predictions of one target from k-fold CV on the training rows."""

    logits: npt.NDArray[np.float64]  # log-probabilities, rows in training order
    fold: npt.NDArray[np.int64]  # which fold held each row out
    classes: list[str]


def fit_head(
    matrix: Features, y: npt.NDArray[np.str_], *, config: ModelConfig, seed: int
) -> LogisticRegression:
    head = new_head(
        c=config.c, class_weight=config.class_weight, max_iter=config.max_iter, seed=seed
    )
    # One OpenMP/BLAS thread: on a shared CPU (the worker's torch threads, other jobs) the
    # solver's thread pool oversubscribes the cores and a 5 s fit takes a minute (measured).
    with threadpool_limits(limits=1):
        head.fit(matrix, y)
    return head


def cv_folds(y: Sequence[str], folds: int) -> int:
    """The number of folds stratified CV can use: every class must appear in every fold."""
    smallest = min(Counter(y).values())
    return min(folds, smallest)


def out_of_fold(
    matrix: Features,
    y: Sequence[str],
    *,
    config: ModelConfig,
    seed: int,
    folds: int | None = None,
) -> OutOfFold | None:
    """Out-of-fold log-probabilities of a fresh head per fold; None when CV is impossible."""
    n_splits = cv_folds(y, folds or config.cv_folds)
    if n_splits < 2:
        return None
    labels = np.asarray(y)
    classes = sorted(set(y))
    logits = np.full((len(labels), len(classes)), -np.inf)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        head = fit_head(matrix[fit_rows], labels[fit_rows], config=config, seed=seed)
        columns = [classes.index(str(c)) for c in head.classes_]
        logits[np.ix_(held_rows, columns)] = head_logits(head, matrix[held_rows])
        fold_of[held_rows] = fold
    return OutOfFold(logits=logits, fold=fold_of, classes=classes)


def fit_model(
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    labels: dict[str, list[str]],
    *,
    config: ModelConfig,
    review_precision: float | None = 0.90,
    seed: int = 42,
) -> tuple[TicketClassifier, dict[str, OutOfFold]]:
    """Features, then per target: out-of-fold predictions → temperature and review threshold,
    and the final head on all rows.

    The temperature and the threshold come from predictions on rows each fold's head never
    saw, so they hold for new tickets; the final head is fitted on every row.
    """
    for target, y in labels.items():
        if len(set(y)) < 2:
            raise ValueError(f"target {target!r} needs at least two classes, got {set(y)}")
    features = TextFeatures(config.features).fit(texts, vectors)
    matrix = features.transform(texts, vectors)
    heads, temperatures, thresholds = {}, {}, {}
    held_out: dict[str, OutOfFold] = {}
    needs_oof = config.calibrate or review_precision is not None
    for target, y in labels.items():
        oof = out_of_fold(matrix, y, config=config, seed=seed) if needs_oof else None
        if oof is not None:
            held_out[target] = oof
            y_index = np.asarray([oof.classes.index(v) for v in y])
            if config.calibrate:
                temperatures[target] = fit_temperature(oof.logits, y_index)
            proba = apply_temperature(oof.logits, temperatures.get(target, 1.0))
            if review_precision is not None:
                threshold, coverage = threshold_for_precision(
                    proba.max(axis=1), proba.argmax(axis=1) == y_index, review_precision
                )
                thresholds[target] = threshold
                logger.info(
                    "%s: review below %.3f (out-of-fold: %.0f%% auto-routed at precision %.2f)",
                    target,
                    threshold,
                    100 * coverage,
                    review_precision,
                )
        elif needs_oof:
            logger.warning("%s: too few rows per class for CV; no calibration or threshold", target)
        heads[target] = fit_head(matrix, np.asarray(y), config=config, seed=seed)
    # An embedding-only model keeps the original artifact shape (no feature object).
    own_features = features if features.uses_text or config.features.dense_weight != 1 else None
    classifier = TicketClassifier(
        heads, features=own_features, temperatures=temperatures, review_thresholds=thresholds
    )
    return classifier, held_out


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
) -> TrainResult:
    """Split (stratified on the first target), embed once, fit, evaluate on the test part
    and register. ``review_precision``: per-target review thresholds for this precision."""
    config = config or ModelConfig()
    targets = list(data.labels)
    if not targets:
        raise ValueError("no targets to train")
    n = len(data.tickets)
    if n < 10:
        raise ValueError(f"only {n} usable rows; need at least 10 to train and evaluate")
    texts = build_texts(data.tickets, max_chars=max_text_chars)
    train_idx, test_idx = split_indices(n, data.labels[targets[0]], test_size=test_size, seed=seed)
    logger.info("embedding %d tickets with %s", n, encoder.name)
    started = time.perf_counter()
    vectors = encoder.encode(texts, show_progress=progress)
    embedded = time.perf_counter()
    labels_train = {t: [data.labels[t][i] for i in train_idx] for t in targets}
    labels_test = {t: [data.labels[t][i] for i in test_idx] for t in targets}
    classifier, _ = fit_model(
        [texts[i] for i in train_idx],
        vectors[np.asarray(train_idx)],
        labels_train,
        config=config,
        review_precision=review_precision,
        seed=seed,
    )
    fitted = time.perf_counter()
    seconds = {"embed": embedded - started, "fit": fitted - embedded}
    logger.info(
        "embedded in %.1fs, fitted %s in %.1fs", seconds["embed"], config.name, seconds["fit"]
    )

    fingerprint = data_fingerprint(data_path, texts)
    version = new_version(fingerprint, datetime.now(UTC))
    directory = registry.path(version)
    metrics = evaluate_classifier(
        classifier,
        vectors[np.asarray(test_idx)],
        labels_test,
        texts=[texts[i] for i in test_idx],
        figure_dir=directory,
    )
    metadata = ModelMetadata(
        version=version,
        created_at=datetime.now(UTC),
        targets=targets,
        labels={t: classifier.labels(t) for t in targets},
        embedding_model=encoder.name,
        embedding_dimension=encoder.dimension,
        max_text_chars=max_text_chars,
        classifier=classifier.description,
        training_config=config.name,
        review_precision=review_precision,
        review_thresholds=classifier.review_thresholds,
        train_seconds=seconds,
        library_versions=library_versions(),
        data_path=str(data_path) if data_path else None,
        data_sha256=fingerprint,
        n_train=len(train_idx),
        n_test=len(test_idx),
    )
    path = registry.save(classifier, metadata, metrics=metrics, make_current=make_current)
    if reference_dir is not None:
        write_held_out_reference(
            reference_dir,
            version=version,
            classifier=classifier,
            vectors=vectors[np.asarray(test_idx)],
            texts=[texts[i] for i in test_idx],
            languages=[data.tickets[i].language for i in test_idx],
            sample_size=reference_size,
            seed=seed,
        )
    return TrainResult(version=version, path=path, metrics=metrics, seconds=seconds)


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
) -> Path:
    """The drift monitor's reference: what the model says about tickets it was not fit on.

    Held-out rows, because a model is over-confident on its own training rows and the
    monitor would read that gap as confidence drift.
    """
    predictions = classifier.predict(vectors, texts)
    thresholds = classifier.review_thresholds or {}
    return write_reference(
        reference_dir,
        model_version=version,
        vectors=vectors,
        labels={t: [p[t].label for p in predictions] for t in classifier.targets},
        probabilities={t: [p[t].probability for p in predictions] for t in classifier.targets},
        text_lengths=[len(text) for text in texts],
        languages=languages,
        needs_review=[
            any(p[t].probability < thresholds.get(t, 0.0) for t in classifier.targets)
            for p in predictions
        ],
        sample_size=sample_size,
        seed=seed,
    )
