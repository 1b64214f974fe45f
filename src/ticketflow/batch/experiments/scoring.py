"""A candidate's predictions scored by the protocol: CV numbers from the out-of-fold
predictions, test numbers from the test part (never used to choose), the winner by CV, the
test labels kept for the plots, and the inference cost of the winner.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, f1_score

from ticketflow.batch.evaluate import confidence_metrics, target_metrics
from ticketflow.batch.experiments.candidates import Outcome
from ticketflow.batch.experiments.protocol import REVIEW_PRECISION, SEED, FloatArray, Prepared
from ticketflow.models.classifier import threshold_for_precision
from ticketflow.models.embedding import Encoder
from ticketflow.models.recipe import ModelConfig, fit_model

logger = logging.getLogger(__name__)


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


__all__ = [
    "HeldOut",
    "choose_winner",
    "held_out",
    "inference_cost",
    "replace_cv",
    "score",
]
