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

import logging
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from ticketflow.batch.train import split_indices
from ticketflow.data.datasets import DEFAULT_ENCODING, ColumnMapping, load_labeled
from ticketflow.data.errors import InputError
from ticketflow.models.embedding import Encoder
from ticketflow.models.features import FeatureConfig, Features, TextFeatures
from ticketflow.models.review import DEFAULT_REVIEW_PRECISION
from ticketflow.models.text import build_texts

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
SEED = 42
TEST_SIZE = 0.2
REVIEW_PRECISION = DEFAULT_REVIEW_PRECISION  # the models are compared at the served default
MIN_CLASS_ROWS = 10  # a class needs 8 training rows (80%) to be in each of 5 CV folds


@dataclass(frozen=True)
class Task:
    """One data set and the targets learned on it."""

    name: str
    file: str  # relative to the datasets folder
    targets: tuple[str, ...]
    mapping: tuple[str, ...] = ()  # ``--map`` pairs
    rows: int | None = None  # stratified subsample of this many rows (None: all)
    encoding: str = DEFAULT_ENCODING  # of a CSV or JSON file (``--encoding``)


TASKS: tuple[Task, ...] = (
    Task("bueck-v3", "bueck-v3/tickets.csv", ("queue", "type", "priority")),
    Task("endava-it", "endava-it/tickets.csv", ("Topic_group",), ("body=Document",), rows=8_000),
)


def default_datasets_dir() -> Path:
    """``../shared/datasets`` next to the repository checkout."""
    return Path(__file__).resolve().parents[4].parent / "shared" / "datasets"


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
        encoding=task.encoding,
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


def file_task(
    path: Path,
    targets: Sequence[str],
    mapping: Sequence[str] = (),
    *,
    encoding: str = DEFAULT_ENCODING,
) -> Task:
    """A :class:`Task` for any labelled file (``ticketflow experiments --data``); its file
    is absolute, so the datasets folder does not matter."""
    name = path.parent.name if path.stem == "tickets" and path.parent.name else path.stem
    return Task(name, str(path.resolve()), tuple(targets), tuple(mapping), encoding=encoding)


def machine_info() -> dict[str, Any]:
    """The CPUs this process may use and the platform: reports say where they were measured."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpus": cpus or 0, "platform": platform.platform()}


__all__ = [
    "MIN_CLASS_ROWS",
    "REVIEW_PRECISION",
    "SEED",
    "TASKS",
    "TEST_SIZE",
    "FloatArray",
    "Prepared",
    "Task",
    "default_datasets_dir",
    "embedded",
    "file_task",
    "load_task",
    "machine_info",
    "prepare",
    "subsample_indices",
]
