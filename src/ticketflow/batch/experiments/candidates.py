"""The candidate models the protocol compares: the majority class, linear heads on a feature
configuration (TF-IDF, the embedding, the hybrid of ``ticketflow train``) and similarity
votes of the nearest training tickets; and the lists of candidates each comparison runs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold

from ticketflow.batch.experiments.protocol import SEED, FloatArray, Prepared
from ticketflow.models.classifier import apply_temperature, fit_temperature, head_logits
from ticketflow.models.features import EMBEDDING_ONLY, HYBRID, FeatureConfig
from ticketflow.models.recipe import (
    BLOCK_GRID,
    EMBEDDING_LR,
    BlockWeights,
    ModelConfig,
    weighted_head,
)

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """One candidate's predictions for one target: out-of-fold on train, and on test."""

    candidate: str
    classes: list[str]
    oof: FloatArray  # probabilities, training rows
    folds: npt.NDArray[np.int64]
    test: FloatArray  # probabilities, test rows
    fit_seconds: float  # features + CV + final fit, this target
    predict_seconds: float  # features + head on the test rows, this target
    notes: str = ""


class Candidate:
    """A model family evaluated with the shared protocol."""

    name = "candidate"

    def run(self, data: Prepared, target: str, folds: int) -> list[Outcome]:
        raise NotImplementedError


def _folds(y: Sequence[str], folds: int) -> StratifiedKFold:
    return StratifiedKFold(
        n_splits=min(folds, min(Counter(y).values())), shuffle=True, random_state=SEED
    )


class Majority(Candidate):
    name = "majority class"

    def run(self, data: Prepared, target: str, folds: int) -> list[Outcome]:
        y = data.y(target, data.train)
        classes = sorted(set(y))
        started = time.perf_counter()

        def prior(rows: npt.NDArray[np.str_]) -> FloatArray:
            counts = Counter(rows.tolist())
            return np.asarray([counts[c] / len(rows) for c in classes])

        oof = np.zeros((len(y), len(classes)))
        fold_of = np.zeros(len(y), dtype=np.int64)
        for fold, (fit_rows, held) in enumerate(_folds(list(y), folds).split(y, y)):
            oof[held] = prior(y[fit_rows])
            fold_of[held] = fold
        test = np.tile(prior(y), (len(data.test), 1))
        seconds = time.perf_counter() - started
        return [Outcome(self.name, classes, oof, fold_of, test, seconds, 0.0)]


class Linear(Candidate):
    """LogisticRegression on a feature configuration; with ``calibrate`` a second row with
    temperature scaling (same heads, so the same labels: only the probabilities differ)."""

    def __init__(self, label: str, config: ModelConfig) -> None:
        self.label = label
        self.config = config
        self.name = f"{label} ({config.name})"

    def run(self, data: Prepared, target: str, folds: int) -> list[Outcome]:
        train_matrix, test_matrix, feature_seconds, transform_seconds = data.features(
            self.config.features
        )
        y = data.y(target, data.train)
        started = time.perf_counter()
        # With a block grid: one CV per choice, the best by out-of-fold macro-F1, as
        # ``ticketflow train`` does it; the CV numbers are then those of the chosen weights.
        head, oof = weighted_head(
            train_matrix,
            list(y),
            features=data.fitted(self.config.features),
            config=self.config,
            seed=SEED,
            folds=folds,
        )
        if oof is None or head is None:
            raise ValueError(f"{data.task.name}/{target}: too few rows per class for CV")
        choice = selection_note(oof.weights, oof.fold_f1)
        fit_seconds = time.perf_counter() - started + feature_seconds
        started = time.perf_counter()
        columns = [oof.classes.index(str(c)) for c in head.classes_]
        test_logits = np.full((len(data.test), len(oof.classes)), -np.inf)
        test_logits[:, columns] = head_logits(head, test_matrix)
        predict_seconds = time.perf_counter() - started + transform_seconds
        raw = Outcome(
            self.label,
            oof.classes,
            apply_temperature(oof.logits, 1.0),
            oof.fold,
            apply_temperature(test_logits, 1.0),
            fit_seconds,
            predict_seconds,
            notes=choice,
        )
        if not self.config.calibrate:
            return [raw]
        y_index = np.asarray([oof.classes.index(v) for v in y])
        temperature = fit_temperature(oof.logits, y_index)
        calibrated = Outcome(
            f"{self.label} + temperature",
            oof.classes,
            apply_temperature(oof.logits, temperature),
            oof.fold,
            apply_temperature(test_logits, temperature),
            fit_seconds,
            predict_seconds,
            notes=", ".join(n for n in (choice, f"T={temperature:.2f}") if n),
        )
        return [raw, calibrated]


def selection_note(
    chosen: BlockWeights | None, fold_f1: Mapping[BlockWeights, Sequence[float]] | None
) -> str:
    """The chosen block weights, and the CV macro-F1 with the choice made without the scored
    fold (for each fold, the weights best on the other folds): choosing on the same folds
    that are reported flatters the CV number, this one much less."""
    if chosen is None or not fold_f1:
        return ""
    n_folds = len(next(iter(fold_f1.values())))
    honest = []
    for k in range(n_folds):
        best = max(
            fold_f1, key=lambda w: float(np.mean([f for i, f in enumerate(fold_f1[w]) if i != k]))
        )
        honest.append(fold_f1[best][k])
    return f"{chosen.name}; CV choosing without the scored fold {np.mean(honest):.3f}"


class NearestNeighbours(Candidate):
    """Similarity-weighted votes of the ``k`` most similar training tickets (cosine on the
    stored embeddings), what a ChromaDB lookup could serve without any trained head."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.name = f"kNN votes k={k}"

    def _votes(
        self,
        query: npt.NDArray[np.float32],
        base: npt.NDArray[np.float32],
        y_base: npt.NDArray[np.int64],
        n_classes: int,
    ) -> FloatArray:
        sims = query @ base.T
        k = min(self.k, base.shape[0])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None) + 1e-6
        votes = np.zeros((len(query), n_classes))
        np.add.at(
            votes, (np.repeat(np.arange(len(query)), k), y_base[top].ravel()), weights.ravel()
        )
        # One pseudo-vote spread over the classes: a unanimous vote of k tickets is not certainty.
        votes += 1.0 / n_classes
        return np.asarray(votes / votes.sum(axis=1, keepdims=True))

    def run(self, data: Prepared, target: str, folds: int) -> list[Outcome]:
        y = data.y(target, data.train)
        classes = sorted(set(y))
        y_index = np.asarray([classes.index(v) for v in y])
        train_vectors = data.vectors[data.train]
        started = time.perf_counter()
        oof = np.zeros((len(y), len(classes)))
        fold_of = np.zeros(len(y), dtype=np.int64)
        for fold, (fit_rows, held) in enumerate(_folds(list(y), folds).split(y, y)):
            oof[held] = self._votes(
                train_vectors[held], train_vectors[fit_rows], y_index[fit_rows], len(classes)
            )
            fold_of[held] = fold
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        test = self._votes(data.vectors[data.test], train_vectors, y_index, len(classes))
        return [
            Outcome(
                self.name, classes, oof, fold_of, test, fit_seconds, time.perf_counter() - started
            )
        ]


HYBRID_X2 = replace(HYBRID, dense_weight=2.0)


def default_candidates() -> list[Candidate]:
    """The compared candidates. Grids are small on purpose: a CPU run must stay < ~30 min.

    Every C is spelled out: the ModelConfig default follows the winner and must not move
    the baselines.
    """
    word_only = FeatureConfig(dense=False, word=True, char=False)
    return [
        Majority(),
        Linear("TF-IDF word 1-2 + LR", ModelConfig(features=word_only, c=10.0, calibrate=False)),
        Linear("embedding + LR C=1", ModelConfig(features=EMBEDDING_ONLY, c=1.0, calibrate=False)),
        Linear("embedding + LR C=10", EMBEDDING_LR),
        Linear(
            "embedding + LR C=100", ModelConfig(features=EMBEDDING_ONLY, c=100.0, calibrate=False)
        ),
        Linear(
            "embedding + LR C=10 unweighted",
            ModelConfig(features=EMBEDDING_ONLY, c=10.0, class_weight=None, calibrate=False),
        ),
        NearestNeighbours(10),
        NearestNeighbours(30),
        Linear("hybrid + LR C=3", ModelConfig(features=HYBRID, c=3.0, block_grid=())),
        Linear("hybrid + LR C=10", ModelConfig(features=HYBRID, c=10.0, block_grid=())),
        Linear("hybrid x2 + LR C=10", ModelConfig(features=HYBRID_X2, c=10.0, block_grid=())),
        Linear("hybrid x2 + LR C=30", ModelConfig(features=HYBRID_X2, c=30.0, block_grid=())),
        Linear(
            "hybrid, block weights by CV + LR C=3",
            ModelConfig(features=HYBRID, c=3.0, block_grid=BLOCK_GRID),
        ),
    ]


def file_candidates() -> list[Candidate]:
    """For any labelled file (``ticketflow experiments --data``): from the majority class and
    the TF-IDF baselines to the encoder alone and the default model (``ticketflow train``)."""
    word_only = FeatureConfig(dense=False, word=True, char=False)
    word_char = FeatureConfig(dense=False, word=True, char=True)
    return [
        Majority(),
        Linear("TF-IDF word 1-2 + LR", ModelConfig(features=word_only, c=10.0, calibrate=False)),
        Linear(
            "TF-IDF word + char + LR",
            ModelConfig(features=word_char, c=10.0, calibrate=False, block_grid=()),
        ),
        Linear("embedding + LR C=10", EMBEDDING_LR),
        Linear(DEFAULT_MODEL, ModelConfig()),
    ]


DEFAULT_MODEL = "default model (hybrid + LR)"


def quick_candidates() -> list[Candidate]:
    """A fast subset for CI: the baselines and the default model."""
    word_only = FeatureConfig(dense=False, word=True, char=False)
    return [
        Majority(),
        Linear("TF-IDF word 1-2 + LR", ModelConfig(features=word_only, c=10.0, calibrate=False)),
        Linear("hybrid + LR", ModelConfig()),
    ]


def encoder_candidates() -> list[Candidate]:
    """What the encoder comparison fits on each encoder's vectors: the vector alone (the
    encoder's own quality) and the default model (what ``ticketflow train`` ships)."""
    return [Linear("embedding + LR C=10", EMBEDDING_LR), Linear(DEFAULT_MODEL, ModelConfig())]


__all__ = [
    "DEFAULT_MODEL",
    "HYBRID_X2",
    "Candidate",
    "Linear",
    "Majority",
    "NearestNeighbours",
    "Outcome",
    "default_candidates",
    "encoder_candidates",
    "file_candidates",
    "quick_candidates",
    "selection_note",
]
