"""The fitting recipe: what a model is made of and how its parts are fitted.

Heads per target on the shared features, feature-block weights chosen by out-of-fold
macro-F1, temperatures and review thresholds from out-of-fold predictions, and the
cascade's first stage. ``ticketflow train``, ``ticketflow retrain`` and the experiments all
fit through :func:`fit_model`, so a model means the same thing wherever it is made.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from ticketflow.models.cascade import (
    ALWAYS_ESCALATE,
    NEVER_ESCALATE,
    CascadeEscalate,
    escalation_threshold,
)
from ticketflow.models.classifier import (
    TicketClassifier,
    apply_temperature,
    fit_temperature,
    head_logits,
    new_head,
    threshold_for_precision,
)
from ticketflow.models.features import EMBEDDING_ONLY, HYBRID, FeatureConfig, Features, TextFeatures
from ticketflow.models.review import DEFAULT_POLICY, ReviewPolicy

logger = logging.getLogger(__name__)

# Below this many rows a fold's fit takes about as long as starting a worker process.
PARALLEL_CV_ROWS = 5_000
# Out-of-fold predictions from at most this many training rows (a stratified sample): they
# choose block weights, temperatures and thresholds, which 20,000 rows estimate as well as
# more, while every CV fit grows with the rows (docs/model-quality.md "Training time at
# scale"). The final heads still fit every row.
CV_MAX_ROWS = 20_000
# Folds of that sampled CV: each fold's head then fits 13,333 rows, more than any fold of the
# 5-fold CV below the cap, at half the CV cost of 5 folds (docs/model-quality.md).
SAMPLED_CV_FOLDS = 3


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
    # Processes for the CV fits (every fold of every block-weight choice is independent);
    # None: one per usable core once there are PARALLEL_CV_ROWS training rows.
    cv_jobs: int | None = None
    # Per target, the block weights with the best out-of-fold macro-F1 (one CV per choice);
    # used only when the features have two or more blocks. Empty: the blocks as built.
    block_grid: tuple[BlockWeights, ...] = BLOCK_GRID
    # The out-of-fold predictions come from a stratified sample of at most this many
    # training rows (None: every row), in sampled_cv_folds folds; see CV_MAX_ROWS.
    cv_max_rows: int | None = CV_MAX_ROWS
    sampled_cv_folds: int = SAMPLED_CV_FOLDS

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


HeadInit: TypeAlias = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass
class OutOfFold:
    """Held-out predictions of one target from k-fold CV on the training rows."""

    logits: npt.NDArray[np.float64]  # log-probabilities, rows in training order
    fold: npt.NDArray[np.int64]  # which fold held each row out
    classes: list[str]
    weights: BlockWeights | None = None  # the block weights chosen by CV (None: no choice)
    fold_f1: dict[BlockWeights, list[float]] | None = None  # per choice, macro-F1 per fold
    # The training rows the logits are for, in order (cv_sample); None: every row.
    rows: npt.NDArray[np.int64] | None = None
    # The first fold's head (coefficients, intercepts): where the final head's solver starts.
    init: HeadInit | None = None

    def labels_of(self, y: Sequence[str]) -> list[str]:
        """``y`` (one label per training row) at the rows these predictions are for."""
        if self.rows is None:
            return list(y)
        return [y[i] for i in self.rows]


def cv_sample(
    labels: Mapping[str, Sequence[str]], *, max_rows: int | None, folds: int, seed: int
) -> npt.NDArray[np.int64] | None:
    """The training rows the out-of-fold predictions come from: None (every row) up to
    ``max_rows``, else a sample of about ``max_rows`` rows, stratified on the first target,
    in training order. Every class of every target keeps at least ``folds`` rows (or all it
    has), so the sample allows the CV the full data allows; one sample for all targets
    keeps their out-of-fold rows aligned (review gate, cascade)."""
    first = np.asarray(next(iter(labels.values())))
    n = len(first)
    if max_rows is None or n <= max_rows:
        return None
    rng = np.random.default_rng(seed)
    picked = np.zeros(n, dtype=bool)
    for value in np.unique(first):
        rows = np.flatnonzero(first == value)
        take = max(round(max_rows * len(rows) / n), min(len(rows), folds))
        picked[rng.choice(rows, size=take, replace=False)] = True
    for y in labels.values():
        values = np.asarray(y)
        for value in np.unique(values):
            rows = np.flatnonzero(values == value)
            short = min(len(rows), folds) - int(picked[rows].sum())
            if short > 0:
                picked[rng.choice(rows[~picked[rows]], size=short, replace=False)] = True
    return np.flatnonzero(picked).astype(np.int64)


def fit_head(
    matrix: Features,
    y: npt.NDArray[np.str_],
    *,
    config: ModelConfig,
    seed: int,
    init: HeadInit | None = None,
) -> LogisticRegression:
    """A head fitted on ``matrix``; ``init``: a head of the same classes on the same columns
    (a CV fold's) to start the solver from: the problem is convex, so the optimum is the
    same, reached in fewer iterations (docs/model-quality.md "Training time at scale")."""
    head = new_head(
        c=config.c, class_weight=config.class_weight, max_iter=config.max_iter, seed=seed
    )
    if init is not None and init[0].shape[1] == matrix.shape[1]:
        classes = np.unique(y)
        if init[0].shape[0] == (1 if len(classes) == 2 else len(classes)):
            head.warm_start = True
            head.coef_, head.intercept_ = init[0].copy(), init[1].copy()
    # One OpenMP/BLAS thread: on a shared CPU (the worker's encoder threads, other jobs) the
    # solver's thread pool oversubscribes the cores and a fit of seconds takes minutes.
    with threadpool_limits(limits=1):
        head.fit(matrix, y)
    head.warm_start = False
    return head


# A class needs this many training rows to take part in the CV the temperature and review
# cut come from; rarer ones are held out of every fold's fit they are not in, so they never
# decide the number of folds (one 1-row class used to switch calibration off for the target).
MIN_CV_CLASS_ROWS = 2


def cv_folds(y: Sequence[str], folds: int) -> int:
    """The number of folds stratified CV can use: every class with at least
    ``MIN_CV_CLASS_ROWS`` rows must appear in every fold; 1 (no CV) when fewer than two
    classes have that many."""
    counts = [c for c in Counter(y).values() if c >= MIN_CV_CLASS_ROWS]
    if len(counts) < 2:
        return 1
    return min(folds, min(counts))


def too_small_to_calibrate(labels: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Per target, the classes with fewer than ``MIN_CV_CLASS_ROWS`` training rows: the
    model can predict them, but their rows cannot be held out for calibration, so the
    target's temperature and review cut come from the other classes (:func:`fit_model`)."""
    found: dict[str, list[str]] = {}
    for target, y in labels.items():
        small = sorted(c for c, n in Counter(y).items() if n < MIN_CV_CLASS_ROWS)
        if small:
            found[target] = small
    return found


def out_of_fold(
    matrix: Features,
    y: Sequence[str],
    *,
    config: ModelConfig,
    seed: int,
    folds: int | None = None,
) -> OutOfFold | None:
    """Out-of-fold log-probabilities of a fresh head per fold; None when CV is impossible."""
    return out_of_fold_many([matrix], y, config=config, seed=seed, folds=folds)[0]


def out_of_fold_many(
    matrices: Sequence[Features],
    y: Sequence[str],
    *,
    config: ModelConfig,
    seed: int,
    folds: int | None = None,
) -> list[OutOfFold | None]:
    """:func:`out_of_fold` of each matrix (same rows, same folds), every fold of every matrix
    fitted in one pool of processes (:func:`cv_jobs`)."""
    n_splits = cv_folds(y, folds or config.cv_folds)
    if n_splits < 2:
        return [None for _ in matrices]
    labels = np.asarray(y)
    classes = sorted(set(y))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class ... has only 1 members": expected for a class below
        # MIN_CV_CLASS_ROWS, which training reports once itself (too_small_to_calibrate).
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(len(labels)), labels))
    tasks = [
        (m, fit_rows, held_rows, fold == 0)
        for m in matrices
        for fold, (fit_rows, held_rows) in enumerate(splits)
    ]
    jobs = cv_jobs(config, rows=len(labels), tasks=len(tasks))
    if jobs > 1:
        from joblib import Parallel, delayed

        logger.info("%d CV fits on %d processes", len(tasks), jobs)
        fitted = Parallel(n_jobs=jobs)(
            delayed(_fold_logits)(m, labels, fit_rows, held_rows, config, seed, keep)
            for m, fit_rows, held_rows, keep in tasks
        )
    else:
        fitted = [
            _fold_logits(m, labels, fit_rows, held_rows, config, seed, keep)
            for m, fit_rows, held_rows, keep in tasks
        ]
    out: list[OutOfFold | None] = []
    for i in range(len(matrices)):
        logits = np.full((len(labels), len(classes)), -np.inf)
        fold_of = np.zeros(len(labels), dtype=np.int64)
        init: HeadInit | None = None
        for fold, (_, held_rows) in enumerate(splits):
            held_logits, head_classes, head_init = fitted[i * len(splits) + fold]
            columns = [classes.index(c) for c in head_classes]
            logits[np.ix_(held_rows, columns)] = held_logits
            fold_of[held_rows] = fold
            if head_init is not None and head_classes == classes:
                init = head_init
        out.append(OutOfFold(logits=logits, fold=fold_of, classes=classes, init=init))
    return out


def _fold_logits(
    matrix: Features,
    labels: npt.NDArray[np.str_],
    fit_rows: npt.NDArray[np.int64],
    held_rows: npt.NDArray[np.int64],
    config: ModelConfig,
    seed: int,
    keep: bool,
) -> tuple[npt.NDArray[np.float64], list[str], HeadInit | None]:
    head = fit_head(matrix[fit_rows], labels[fit_rows], config=config, seed=seed)
    init = (head.coef_, head.intercept_) if keep else None
    return head_logits(head, matrix[held_rows]), [str(c) for c in head.classes_], init


def cv_jobs(config: ModelConfig, *, rows: int, tasks: int) -> int:
    """Processes for the CV fits: ``config.cv_jobs``, or (None) one per usable core once
    the rows make a fit cost more than starting a process (PARALLEL_CV_ROWS)."""
    if config.cv_jobs is not None:
        return max(1, min(config.cv_jobs, tasks))
    if rows < PARALLEL_CV_ROWS:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), tasks))


def fold_macro_f1(oof: OutOfFold, y: Sequence[str]) -> list[float]:
    """Macro-F1 per fold; ``y``: the labels of ``oof``'s rows (:meth:`OutOfFold.labels_of`)."""
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
    cv_rows: npt.NDArray[np.int64] | None = None,
) -> tuple[LogisticRegression | None, OutOfFold | None]:
    """Per target: CV of every ``config.block_grid`` choice, the best by mean out-of-fold
    macro-F1 (ties: the earlier choice), and the final head on all rows with that choice,
    its coefficients scaled back so it reads ``matrix`` as it is.

    Without a grid (or a single feature block) this is ``out_of_fold`` + ``fit_head``.
    ``cv_rows``: the CV runs on these rows only (:func:`cv_sample`); the final head fits all.
    """
    cv_matrix = matrix if cv_rows is None else matrix[cv_rows]
    cv_y = list(y) if cv_rows is None else [y[i] for i in cv_rows]
    blocks = int(bool(features.config.dense)) + int(features.word is not None)
    blocks += int(features.char is not None)
    grid = config.block_grid if blocks > 1 and len(config.block_grid) > 1 else ()
    if not grid or cv_folds(cv_y, folds or config.cv_folds) < 2:
        oof = out_of_fold(cv_matrix, cv_y, config=config, seed=seed, folds=folds)
        if oof is not None:
            oof.rows = cv_rows
        init = oof.init if oof is not None else None
        head = fit_head(matrix, np.asarray(y), config=config, seed=seed, init=init) if fit else None
        return head, oof
    best: tuple[float, BlockWeights, OutOfFold, npt.NDArray[np.float32]] | None = None
    fold_f1: dict[BlockWeights, list[float]] = {}
    scales = [block_scale(features, weights) for weights in grid]
    oofs = out_of_fold_many(
        [_scaled(cv_matrix, scale) for scale in scales],
        cv_y,
        config=config,
        seed=seed,
        folds=folds,
    )
    for weights, scale, oof in zip(grid, scales, oofs, strict=True):
        if oof is None:  # cannot happen after the cv_folds check; keeps mypy honest
            continue
        oof.rows = cv_rows
        fold_f1[weights] = fold_macro_f1(oof, cv_y)
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
    head = fit_head(_scaled(matrix, scale), np.asarray(y), config=config, seed=seed, init=oof.init)
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
    review: ReviewPolicy | None = DEFAULT_POLICY,
    seed: int = 42,
    text_blocks: TextFeatures | None = None,
    judged: npt.NDArray[np.bool_] | None = None,
) -> tuple[TicketClassifier, dict[str, OutOfFold]]:
    """Features, then per target: out-of-fold predictions → temperature and review threshold,
    and the final head on all rows.

    The temperature and the threshold come from predictions on rows each fold's head never
    saw, so they hold for new tickets; the final head is fitted on every row.
    ``review``: the precision each target's threshold aims at (``precisions``) and the gate,
    the targets whose review holds the whole ticket (empty = the first target), both stored
    in the model; None fits no review threshold (a stage whose cuts are never served).
    ``text_blocks``: a fitted feature set (of a model fitted on the same ``texts``) whose
    TF-IDF blocks to reuse instead of fitting new ones. ``judged``: per training row, whether
    its labels are people's (None: all are); the temperature and the review threshold are
    chosen on those rows only (:func:`judged_rows`).
    """
    for target, y in labels.items():
        if len(set(y)) < 2:
            raise ValueError(f"target {target!r} needs at least two classes, got {set(y)}")
    gate = list(review.gate) if review is not None else []
    unknown = [t for t in gate if t not in labels]
    if unknown:
        raise ValueError(f"review gate {unknown} names no trained target of {list(labels)}")
    precisions: dict[str, float | None] = (
        dict(review.precisions(list(labels))) if review is not None else dict.fromkeys(labels)
    )
    features = TextFeatures(config.features).fit(texts, vectors, text_blocks=text_blocks)
    matrix = features.transform(texts, vectors)
    heads, temperatures, thresholds = {}, {}, {}
    held_out: dict[str, OutOfFold] = {}
    needs_oof = config.calibrate or len(config.block_grid) > 1
    needs_oof = needs_oof or any(p is not None for p in precisions.values())
    cv_rows = cv_sample(labels, max_rows=config.cv_max_rows, folds=config.cv_folds, seed=seed)
    folds = config.cv_folds if cv_rows is None else min(config.cv_folds, config.sampled_cv_folds)
    if needs_oof and cv_rows is not None:
        logger.info(
            "out-of-fold predictions from a stratified sample of %d of %d training rows, %d folds",
            len(cv_rows),
            len(texts),
            folds,
        )
    for target, y in labels.items():
        precision = precisions[target]
        oof: OutOfFold | None = None
        head: LogisticRegression | None = None
        if needs_oof:
            head, oof = weighted_head(
                matrix,
                y,
                features=features,
                config=config,
                seed=seed,
                folds=folds,
                cv_rows=cv_rows,
            )
        if oof is not None:
            held_out[target] = oof
            y_index = np.asarray([oof.classes.index(v) for v in oof.labels_of(y)])
            scored = judged_rows(oof, judged, target)
            if config.calibrate:
                # Rows of a class no fold's head saw (too rare to hold out) have no finite
                # log-probability of their label: the temperature comes from the others.
                usable = scored & np.isfinite(oof.logits[np.arange(len(y_index)), y_index])
                temperatures[target] = fit_temperature(oof.logits[usable], y_index[usable])
            proba = apply_temperature(oof.logits[scored], temperatures.get(target, 1.0))
            if precision is not None:
                threshold, coverage = threshold_for_precision(
                    proba.max(axis=1), proba.argmax(axis=1) == y_index[scored], precision
                )
                thresholds[target] = threshold
                logger.info(
                    "%s: review below %.3f (out-of-fold: %.0f%% auto-routed at precision %.2f)",
                    target,
                    threshold,
                    100 * coverage,
                    precision,
                )
        elif needs_oof:
            logger.warning("%s: too few rows per class for CV; no calibration or threshold", target)
        heads[target] = head or fit_head(matrix, np.asarray(y), config=config, seed=seed)
    # An embedding-only model keeps the original artifact shape (no feature object).
    own_features = features if features.uses_text or config.features.dense_weight != 1 else None
    classifier = TicketClassifier(
        heads,
        features=own_features,
        temperatures=temperatures,
        review_thresholds=thresholds,
        review_gate=gate,
    )
    return classifier, held_out


# Fewer people-labelled out-of-fold rows than this and the threshold would rest on a handful
# of tickets: every row is used instead (and the log says so).
MIN_JUDGED_ROWS = 100


def judged_rows(
    oof: OutOfFold, judged: npt.NDArray[np.bool_] | None, target: str
) -> npt.NDArray[np.bool_]:
    """Which out-of-fold rows the temperature and the review threshold are chosen on.

    A retrain also learns from the model's own confident labels (``RETRAIN_USE_PREDICTED``).
    Out of fold, a head agrees with those far more often than with people, so a threshold
    chosen on them promises a precision that people's tickets do not get (docs/learning.md:
    after a promotion, 95% auto-routed at precision 0.84 where the cut aimed higher). Only the
    rows whose labels are people's are scored, when there are enough of them."""
    n = len(oof.logits)
    if judged is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(judged if oof.rows is None else judged[oof.rows], dtype=bool)
    if int(mask.sum()) < MIN_JUDGED_ROWS:
        logger.info(
            "%s: %d of %d out-of-fold rows carry people's labels (< %d): threshold and "
            "temperature chosen on all of them",
            target,
            int(mask.sum()),
            n,
            MIN_JUDGED_ROWS,
        )
        return np.ones(n, dtype=bool)
    return mask


def out_of_fold_rows(held_out: Mapping[str, OutOfFold], n_train: int) -> int:
    """How many training rows have out-of-fold predictions: ``n_train``, the CV sample's size
    (:func:`cv_sample`), or 0 when no target could be cross-validated."""
    for oof in held_out.values():
        return n_train if oof.rows is None else len(oof.rows)
    return 0


def out_of_fold_confidence(
    classifier: TicketClassifier,
    held_out: Mapping[str, OutOfFold],
    labels: Mapping[str, Sequence[str]],
) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]:
    """Per target with out-of-fold predictions: the calibrated probability of the predicted
    label and whether it was right, per training row of the CV (:func:`cv_sample`: the same
    rows for every target)."""
    out: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = {}
    for target, oof in held_out.items():
        y_index = np.asarray([oof.classes.index(v) for v in oof.labels_of(labels[target])])
        proba = apply_temperature(oof.logits, classifier.temperatures.get(target, 1.0))
        out[target] = (proba.max(axis=1), np.asarray(proba.argmax(axis=1) == y_index))
    return out


def add_first_stage(  # noqa: PLR0913
    classifier: TicketClassifier,
    held_out: dict[str, OutOfFold],
    texts: Sequence[str],
    static: npt.NDArray[np.float32],
    labels: dict[str, list[str]],
    *,
    config: ModelConfig,
    agreement: float,
    seed: int,
    escalate: CascadeEscalate = "all",
) -> float:
    """Fit the cascade's first stage into ``classifier``; returns the out-of-fold share of
    tickets it escalates. A target without out-of-fold predictions always escalates.

    ``escalate``: whose unsure first-stage answer sends a ticket to the transformer: every
    target's, or only the review gate's (``classifier.review_gate``, unset = the first
    target); the other targets then keep the first stage's answer unless the ticket is
    escalated anyway (their threshold is 0). On bueck-v3 with queue, type and priority,
    "gate" escalated 37% of the tickets out-of-fold instead of 67%, at 0.1-0.2 points of
    out-of-fold macro-F1 on queue and type (docs/speed.md, "Levers")."""
    first, first_held_out = fit_model(
        texts,
        static,
        labels,
        config=config,
        review=None,  # the cascade serves the second stage's cuts
        seed=seed,
        # The same training texts: one vocabulary for both stages, so serving builds an
        # escalated ticket's TF-IDF once and the artifact stores it once.
        text_blocks=classifier.features,
    )
    thresholds: dict[str, float] = {}
    sampled = [oof.rows for oof in (*held_out.values(), *first_held_out.values())]
    rows = sampled[0] if sampled else None
    if any(not _same_rows(r, rows) for r in sampled):
        raise ValueError("the two stages' out-of-fold predictions are for different rows")
    escalating = set(labels)
    if escalate == "gate":
        escalating = set(classifier.review_gate or list(labels)[:1])
    escalated = np.zeros(len(texts) if rows is None else len(rows), dtype=bool)
    for target in labels:
        second_oof, first_oof = held_out.get(target), first_held_out.get(target)
        if second_oof is None or first_oof is None:
            thresholds[target] = ALWAYS_ESCALATE
            escalated[:] = True
            continue
        if target not in escalating:
            thresholds[target] = NEVER_ESCALATE
            continue
        p2 = apply_temperature(second_oof.logits, classifier.temperatures.get(target, 1.0))
        p1 = apply_temperature(first_oof.logits, first.temperatures.get(target, 1.0))
        thresholds[target], share = escalation_threshold(p1, p2, agreement=agreement)
        escalated |= p1.max(axis=1) < thresholds[target]
        logger.info(
            "%s: cascade escalates below %.3f (out-of-fold: %.0f%% of tickets)",
            target,
            thresholds[target],
            100 * share,
        )
    classifier.first_stage = first
    classifier.escalation_thresholds = thresholds
    logger.info("cascade: %.0f%% of tickets escalated out-of-fold", 100 * escalated.mean())
    return float(escalated.mean())


def _same_rows(a: npt.NDArray[np.int64] | None, b: npt.NDArray[np.int64] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))
