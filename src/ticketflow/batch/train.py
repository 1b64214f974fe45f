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
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from ticketflow.batch.evaluate import evaluate_classifier, predict_rows
from ticketflow.models.cascade import ALWAYS_ESCALATE, escalation_threshold
from ticketflow.models.classifier import (
    DEFAULT_REVIEW_THRESHOLD,
    TicketClassifier,
    apply_temperature,
    fit_temperature,
    head_logits,
    new_head,
    review_thresholds,
    threshold_for_precision,
)
from ticketflow.models.datasets import LabeledData
from ticketflow.models.embedding import Encoder
from ticketflow.models.encoders import encoder_backend, encoder_max_tokens, encoder_sha256
from ticketflow.models.features import EMBEDDING_ONLY, HYBRID, FeatureConfig, Features, TextFeatures
from ticketflow.models.registry import ModelMetadata, ModelRegistry, new_version, sha256_file
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


@dataclass(frozen=True)
class BlockWeights:
    """Weights of the feature blocks for one target's head (``c`` stays the model's C).

    A head fitted on the blocks scaled by these weights is stored with its coefficients
    multiplied by the same weights, so it reads the shared, unweighted feature matrix: the
    artifact keeps one feature object for all targets.
    """

    dense: float = 1.0
    word: float = 1.0
    char: float = 1.0

    @property
    def name(self) -> str:
        return f"emb x{self.dense:g} word x{self.word:g} char x{self.char:g}"


# Chosen per target by out-of-fold macro-F1 on the training rows (docs/model-quality.md):
# the English-only embedding at half weight helped bueck type and priority and endava, and
# cost queue. (Char n-grams x1.5 won queue in CV but doubled its CV ECE: left out.)
BLOCK_GRID = (BlockWeights(), BlockWeights(dense=0.5))


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
    # Per target, the block weights with the best out-of-fold macro-F1 (one CV per choice);
    # used only when the features have two or more blocks. Empty: the blocks as built.
    block_grid: tuple[BlockWeights, ...] = BLOCK_GRID

    @property
    def name(self) -> str:
        weight = "bal" if self.class_weight else "none"
        calibrated = "+T" if self.calibrate else ""
        sparse = self.features.word or self.features.char
        dense = f"x{self.features.dense_weight:g}" if sparse and self.features.dense else ""
        blocks = sum((self.features.dense, self.features.word, self.features.char))
        chosen = blocks > 1 and len(self.block_grid) > 1
        grid = f" block weights by CV of {len(self.block_grid)}" if chosen else ""
        return f"lr[{self.features.name}{dense}] C={self.c:g} {weight}{calibrated}{grid}"


EMBEDDING_LR = ModelConfig(
    features=EMBEDDING_ONLY, c=10.0, calibrate=False, block_grid=()
)  # the original model


@dataclass
class OutOfFold:
    """Held-out predictions of one target from k-fold CV on the training rows."""

    logits: npt.NDArray[np.float64]  # log-probabilities, rows in training order
    fold: npt.NDArray[np.int64]  # which fold held each row out
    classes: list[str]
    weights: BlockWeights | None = None  # the block weights chosen by CV (None: no choice)
    fold_f1: dict[BlockWeights, list[float]] | None = None  # per choice, macro-F1 per fold


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


def fold_macro_f1(oof: OutOfFold, y: Sequence[str]) -> list[float]:
    predicted = np.asarray(oof.classes)[oof.logits.argmax(axis=1)]
    labels = np.asarray(y)
    return [
        float(f1_score(labels[oof.fold == k], predicted[oof.fold == k], average="macro"))
        for k in np.unique(oof.fold)
    ]


def block_scale(features: TextFeatures, weights: BlockWeights) -> npt.NDArray[np.float32]:
    """One factor per column of ``features``' matrix (blocks: embedding, word, char)."""
    parts = []
    if features.config.dense and features.dimension:
        parts.append(np.full(features.dimension, weights.dense, dtype=np.float32))
    for vectorizer, weight in ((features.word, weights.word), (features.char, weights.char)):
        if vectorizer is not None:
            parts.append(np.full(len(vectorizer.vocabulary_), weight, dtype=np.float32))
    return np.concatenate(parts)


def weighted_head(
    matrix: Features,
    y: Sequence[str],
    *,
    features: TextFeatures,
    config: ModelConfig,
    seed: int,
    folds: int | None = None,
    fit: bool = True,
) -> tuple[LogisticRegression | None, OutOfFold | None]:
    """Per target: CV of every ``config.block_grid`` choice, the best by mean out-of-fold
    macro-F1 (ties: the earlier choice), and the final head on all rows with that choice,
    its coefficients scaled back so it reads ``matrix`` as it is.

    Without a grid (or a single feature block) this is ``out_of_fold`` + ``fit_head``.
    """
    blocks = int(bool(features.config.dense)) + int(features.word is not None)
    blocks += int(features.char is not None)
    grid = config.block_grid if blocks > 1 and len(config.block_grid) > 1 else ()
    if not grid or cv_folds(y, folds or config.cv_folds) < 2:
        oof = out_of_fold(matrix, y, config=config, seed=seed, folds=folds)
        head = fit_head(matrix, np.asarray(y), config=config, seed=seed) if fit else None
        return head, oof
    best: tuple[float, BlockWeights, OutOfFold, npt.NDArray[np.float32]] | None = None
    fold_f1: dict[BlockWeights, list[float]] = {}
    for weights in grid:
        scale = block_scale(features, weights)
        oof = out_of_fold(_scaled(matrix, scale), y, config=config, seed=seed, folds=folds)
        if oof is None:  # cannot happen after the cv_folds check; keeps mypy honest
            continue
        fold_f1[weights] = fold_macro_f1(oof, y)
        score = float(np.mean(fold_f1[weights]))
        logger.info("weights %s: out-of-fold macro-F1 %.4f", weights.name, score)
        if best is None or score > best[0]:
            best = (score, weights, oof, scale)
    if best is None:
        return None, None
    _, chosen, oof, scale = best
    oof.weights, oof.fold_f1 = chosen, fold_f1
    logger.info("chose %s", chosen.name)
    if not fit:
        return None, oof
    head = fit_head(_scaled(matrix, scale), np.asarray(y), config=config, seed=seed)
    head.coef_ = head.coef_ * scale[np.newaxis, :]
    return head, oof


def _scaled(matrix: Features, scale: npt.NDArray[np.float32]) -> Features:
    # All ones: the matrix itself, so the unweighted choice is bit for bit the fixed model.
    if np.all(scale == 1):
        return matrix
    scaled: sp.csr_matrix = sp.csr_matrix(matrix) @ sp.diags(scale, format="csr")
    return scaled


def fit_model(
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    labels: dict[str, list[str]],
    *,
    config: ModelConfig,
    review_precision: float | None = 0.90,
    seed: int = 42,
    text_blocks: TextFeatures | None = None,
) -> tuple[TicketClassifier, dict[str, OutOfFold]]:
    """Features, then per target: out-of-fold predictions → temperature and review threshold,
    and the final head on all rows.

    The temperature and the threshold come from predictions on rows each fold's head never
    saw, so they hold for new tickets; the final head is fitted on every row.
    ``text_blocks``: a fitted feature set (of a model fitted on the same ``texts``) whose
    TF-IDF blocks to reuse instead of fitting new ones.
    """
    for target, y in labels.items():
        if len(set(y)) < 2:
            raise ValueError(f"target {target!r} needs at least two classes, got {set(y)}")
    features = TextFeatures(config.features).fit(texts, vectors, text_blocks=text_blocks)
    matrix = features.transform(texts, vectors)
    heads, temperatures, thresholds = {}, {}, {}
    held_out: dict[str, OutOfFold] = {}
    needs_oof = config.calibrate or review_precision is not None or len(config.block_grid) > 1
    for target, y in labels.items():
        oof: OutOfFold | None = None
        head: LogisticRegression | None = None
        if needs_oof:
            head, oof = weighted_head(matrix, y, features=features, config=config, seed=seed)
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
        heads[target] = head or fit_head(matrix, np.asarray(y), config=config, seed=seed)
    # An embedding-only model keeps the original artifact shape (no feature object).
    own_features = features if features.uses_text or config.features.dense_weight != 1 else None
    classifier = TicketClassifier(
        heads, features=own_features, temperatures=temperatures, review_thresholds=thresholds
    )
    return classifier, held_out


def add_first_stage(
    classifier: TicketClassifier,
    held_out: dict[str, OutOfFold],
    texts: Sequence[str],
    static: npt.NDArray[np.float32],
    labels: dict[str, list[str]],
    *,
    config: ModelConfig,
    agreement: float,
    seed: int,
) -> float:
    """Fit the cascade's first stage into ``classifier``; returns the out-of-fold share of
    tickets it escalates. A target without out-of-fold predictions always escalates."""
    first, first_held_out = fit_model(
        texts,
        static,
        labels,
        config=config,
        review_precision=None,
        seed=seed,
        # The same training texts: one vocabulary for both stages, so serving builds an
        # escalated ticket's TF-IDF once and the artifact stores it once.
        text_blocks=classifier.features,
    )
    thresholds: dict[str, float] = {}
    escalate = np.zeros(len(texts), dtype=bool)
    for target in labels:
        second_oof, first_oof = held_out.get(target), first_held_out.get(target)
        if second_oof is None or first_oof is None:
            thresholds[target] = ALWAYS_ESCALATE
            escalate[:] = True
            continue
        p2 = apply_temperature(second_oof.logits, classifier.temperatures.get(target, 1.0))
        p1 = apply_temperature(first_oof.logits, first.temperatures.get(target, 1.0))
        thresholds[target], share = escalation_threshold(p1, p2, agreement=agreement)
        escalate |= p1.max(axis=1) < thresholds[target]
        logger.info(
            "%s: cascade escalates below %.3f (out-of-fold: %.0f%% of tickets)",
            target,
            thresholds[target],
            100 * share,
        )
    classifier.first_stage = first
    classifier.escalation_thresholds = thresholds
    logger.info("cascade: %.0f%% of tickets escalated out-of-fold", 100 * escalate.mean())
    return float(escalate.mean())


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
) -> TrainResult:
    """Split (stratified on the first target), embed once, fit, evaluate on the test part
    and register. ``review_precision``: per-target review thresholds for this precision.

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
    metrics = evaluate_classifier(
        classifier,
        vectors[np.asarray(test_idx)],
        labels_test,
        texts=[texts[i] for i in test_idx],
        figure_dir=directory,
        static_vectors=static[np.asarray(test_idx)] if static is not None else None,
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
            static_vectors=static[np.asarray(test_idx)] if static is not None else None,
            texts=[texts[i] for i in test_idx],
            languages=[data.tickets[i].language for i in test_idx],
            sample_size=reference_size,
            seed=seed,
            review_threshold=review_threshold,
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
    )
    return write_sample_reference(
        reference_dir, model_version=version, sample=sample, sample_size=sample_size, seed=seed
    )
