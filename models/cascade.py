"""The confidence cascade: a cheap first stage decides the tickets it is sure about.

Stage one reads a static (model2vec) embedding plus the sparse text features; a ticket goes
on to the transformer stage when any target's first-stage confidence falls below that
target's escalation threshold. The thresholds are chosen on out-of-fold predictions of the
training rows (:func:`escalation_threshold`): the lowest cut at which the cascade's macro-F1
stays within ``tolerance`` of the transformer path alone, so the cheap stage only takes over
where it agrees with the expensive one often enough not to cost accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import f1_score

from models.classifier import Prediction, TicketClassifier

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
# A threshold no probability reaches: every ticket goes to the transformer (finite, so the
# model metadata stays valid JSON).
ALWAYS_ESCALATE = 2.0


@dataclass(frozen=True)
class CascadeOutcome:
    predictions: list[dict[str, Prediction]]
    escalated: npt.NDArray[np.bool_]  # rows the transformer stage decided


def escalation_mask(
    first: Sequence[Mapping[str, Prediction]], thresholds: Mapping[str, float]
) -> npt.NDArray[np.bool_]:
    """Rows where some target's first-stage confidence is below its threshold."""
    return np.asarray(
        [any(p[t].probability < thresholds.get(t, 1.0) for t in p) for p in first],
        dtype=bool,
    )


def predict_cascade(
    first_stage: TicketClassifier,
    second_stage: TicketClassifier,
    thresholds: Mapping[str, float],
    *,
    texts: Sequence[str],
    static_vectors: npt.NDArray[np.float32],
    dense_vectors: Callable[[list[int]], npt.NDArray[np.float32]],
) -> CascadeOutcome:
    """Predict every row with the first stage, re-predict the unsure rows with the second.

    ``dense_vectors(rows)`` returns the transformer vectors of those rows: the serving
    pipeline encodes them only then; evaluation passes precomputed rows.
    """
    first = first_stage.predict(static_vectors, texts)
    escalated = escalation_mask(first, thresholds)
    rows = [int(i) for i in np.flatnonzero(escalated)]
    if rows:
        second = second_stage.predict(dense_vectors(rows), [texts[i] for i in rows])
        for row, prediction in zip(rows, second, strict=True):
            first[row] = prediction
    return CascadeOutcome(predictions=first, escalated=escalated)


def escalation_threshold(
    first_proba: FloatArray,
    second_proba: FloatArray,
    y_index: npt.NDArray[np.int64],
    *,
    tolerance: float,
) -> tuple[float, float]:
    """(threshold, escalated share): the lowest first-stage cut within ``tolerance``.

    Both probability matrices are out-of-fold, with the same class columns. Candidate cuts
    are the quantiles of the first-stage confidence; the cut escalates every row below it.
    """
    confidence = first_proba.max(axis=1)
    first_pred = first_proba.argmax(axis=1)
    second_pred = second_proba.argmax(axis=1)
    labels = np.arange(first_proba.shape[1])
    full = f1_score(y_index, second_pred, labels=labels, average="macro", zero_division=0)
    for share in np.linspace(0.0, 1.0, 41):
        cut = float(np.quantile(confidence, share)) if share < 1 else ALWAYS_ESCALATE
        escalate = confidence < cut
        pred = np.where(escalate, second_pred, first_pred)
        score = f1_score(y_index, pred, labels=labels, average="macro", zero_division=0)
        if score >= full - tolerance:
            return cut, float(escalate.mean())
    return ALWAYS_ESCALATE, 1.0
