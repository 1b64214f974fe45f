"""The confidence cascade: a cheap first stage decides the tickets it is sure about.

Stage one reads a static (model2vec) embedding plus the sparse text features; a ticket goes
on to the transformer stage when any target's first-stage confidence falls below that
target's escalation threshold. The thresholds are chosen on out-of-fold predictions of the
training rows (:func:`escalation_threshold`): the lowest cut above which the first stage
gives the transformer stage's answer on at least ``agreement`` of the tickets it keeps.
With ``CASCADE_ESCALATE=gate`` (the default) only the review gate's targets get such a cut;
the others get :data:`NEVER_ESCALATE` and keep the first stage's answer unless the ticket
escalates anyway.

Why agreement and not "macro-F1 within a tolerance": two stages can have the same
out-of-fold macro-F1 and still disagree on many tickets, so a cut chosen on the F1
difference keeps too many tickets in the first stage and loses accuracy on new ones;
agreement with the transformer is what a cascade must preserve, and it transfers to unseen
tickets (numbers: docs/model-quality.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ticketflow.models.classifier import Prediction, TicketClassifier, threshold_for_precision

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
# A threshold no probability reaches: every ticket goes to the transformer (finite, so the
# model metadata stays valid JSON).
ALWAYS_ESCALATE = 2.0
# A threshold no probability is below: the target's answer never escalates a ticket.
NEVER_ESCALATE = 0.0
# Whose unsure first-stage answer escalates: every target's, or the review gate's only.
CascadeEscalate = Literal["all", "gate"]


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


@dataclass(frozen=True)
class FirstStageOutcome:
    """The first stage's decisions: every row's prediction, the rows it left to the second
    stage, and the TF-IDF rows both stages read (when they share their vectorizers)."""

    predictions: list[dict[str, Prediction]]
    escalated: npt.NDArray[np.bool_]
    text_blocks: sp.csr_matrix | None


def predict_first_stage(
    first_stage: TicketClassifier,
    second_stage: TicketClassifier,
    thresholds: Mapping[str, float],
    *,
    texts: Sequence[str],
    static_vectors: npt.NDArray[np.float32],
) -> FirstStageOutcome:
    """Predict every row with the first stage and mark the rows it is unsure of."""
    first_features, second_features = first_stage.features, second_stage.features
    # Stages fitted on the same texts share one TF-IDF (ticketflow.batch.train.add_first_stage): an
    # escalated ticket's sparse rows are then built once, not once per stage.
    shared = (
        first_features is not None
        and second_features is not None
        and first_features.shares_text_blocks(second_features)
    )
    blocks = first_features.text_blocks(texts) if shared and first_features else None
    first = first_stage.predict(static_vectors, texts, text_blocks=blocks)
    return FirstStageOutcome(
        predictions=first, escalated=escalation_mask(first, thresholds), text_blocks=blocks
    )


def predict_second_stage(
    second_stage: TicketClassifier,
    first: FirstStageOutcome,
    *,
    texts: Sequence[str],
    dense_vectors: Callable[[list[int]], npt.NDArray[np.float32]],
) -> CascadeOutcome:
    """Re-predict the rows ``first`` escalated with the second stage (``first`` is kept)."""
    predictions = list(first.predictions)
    rows = [int(i) for i in np.flatnonzero(first.escalated)]
    if rows:
        blocks = first.text_blocks
        second = second_stage.predict(
            dense_vectors(rows),
            [texts[i] for i in rows],
            text_blocks=blocks[rows] if blocks is not None else None,
        )
        for row, prediction in zip(rows, second, strict=True):
            predictions[row] = prediction
    return CascadeOutcome(predictions=predictions, escalated=first.escalated)


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
    first = predict_first_stage(
        first_stage, second_stage, thresholds, texts=texts, static_vectors=static_vectors
    )
    return predict_second_stage(second_stage, first, texts=texts, dense_vectors=dense_vectors)


def escalation_threshold(
    first_proba: FloatArray,
    second_proba: FloatArray,
    *,
    agreement: float,
) -> tuple[float, float]:
    """(threshold, escalated share): the lowest first-stage cut whose kept tickets get the
    second stage's label at least ``agreement`` of the time.

    Both probability matrices are out-of-fold, with the same class columns. When no cut gets
    there, :data:`ALWAYS_ESCALATE`.
    """
    same = first_proba.argmax(axis=1) == second_proba.argmax(axis=1)
    cut, kept = threshold_for_precision(first_proba.max(axis=1), same, agreement)
    if kept == 0.0:
        return ALWAYS_ESCALATE, 1.0
    return cut, 1.0 - kept
