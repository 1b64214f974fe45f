"""One scikit-learn head per target on the ticket features (embedding, optionally TF-IDF).

The classifier owns its fitted :class:`~ticketflow.models.features.TextFeatures`, a temperature per
target (probabilities calibrated on out-of-fold predictions) and a review threshold per
target (the lowest probability at which the out-of-fold predictions reached the target
precision) and the review gate (the targets whose review holds the whole ticket), so one
joblib artifact is everything serving needs besides the encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression

from ticketflow.models.features import EMBEDDING_ONLY, FeatureConfig, Features, TextFeatures

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The prediction for one target of one ticket."""

    label: str
    probability: float
    top: tuple[tuple[str, float], ...]


def new_head(*, c: float, class_weight: str | None, max_iter: int, seed: int) -> LogisticRegression:
    return LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, random_state=seed)


def head_logits(head: LogisticRegression, features: Features) -> npt.NDArray[np.float64]:
    """Log-probabilities of ``head``: softmax(logits / T) is the calibrated distribution."""
    return np.asarray(log_softmax(np.asarray(head.predict_log_proba(features)), axis=1))


def fit_temperature(logits: npt.NDArray[np.float64], y_index: npt.NDArray[np.int64]) -> float:
    """The temperature minimising the negative log-likelihood of held-out predictions.

    One scalar keeps the ranking (and so accuracy) unchanged and only fixes over- or
    under-confidence; a strongly regularised or class-weighted model is rarely calibrated.
    """

    def nll(log_t: float) -> float:
        scaled = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-scaled[np.arange(len(y_index)), y_index].mean())

    result = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def apply_temperature(
    logits: npt.NDArray[np.float64], temperature: float
) -> npt.NDArray[np.float64]:
    return np.asarray(softmax(logits / temperature, axis=1))


def threshold_for_precision(
    confidence: Sequence[float] | npt.NDArray[np.float64],
    correct: Sequence[bool] | npt.NDArray[np.bool_],
    precision: float,
) -> tuple[float, float]:
    """(threshold, coverage): the lowest cut whose auto-routed set reaches ``precision``.

    Auto-routing sends every prediction with confidence ≥ threshold; the returned cut is the
    one that routes the most tickets while the routed ones are still right at least
    ``precision`` of the time. When no cut gets there, (1.0 + tiny, 0.0): route nothing.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if len(conf) == 0:
        return float(np.nextafter(1.0, 2.0)), 0.0
    order = np.argsort(-conf, kind="stable")
    conf, ok = conf[order], ok[order]
    running = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    # A cut can only fall between distinct confidences: tied tickets are routed together.
    last_of_tie = np.r_[conf[1:] != conf[:-1], True]
    feasible = np.flatnonzero((running >= precision) & last_of_tie)
    if len(feasible) == 0:
        return float(np.nextafter(1.0, 2.0)), 0.0
    k = int(feasible[-1])
    return float(conf[k]), (k + 1) / len(conf)


class TicketClassifier:
    """Multi-target classifier: several targets share one embedding pass and one feature set."""

    def __init__(
        self,
        heads: Mapping[str, LogisticRegression],
        *,
        features: TextFeatures | None = None,
        temperatures: Mapping[str, float] | None = None,
        review_thresholds: Mapping[str, float] | None = None,
        first_stage: TicketClassifier | None = None,
        escalation_thresholds: Mapping[str, float] | None = None,
        review_gate: Sequence[str] | None = None,
    ) -> None:
        if not heads:
            raise ValueError("a classifier needs at least one target")
        unknown = [t for t in review_gate or () if t not in heads]
        if unknown:
            raise ValueError(f"review gate {unknown} names no target of {list(heads)}")
        self.heads = dict(heads)
        self.features = features
        self.temperatures = dict(temperatures or {})
        self.review_thresholds = dict(review_thresholds or {})
        # The targets whose review holds the ticket (needs_review); empty = the first target.
        self.review_gate = list(review_gate or [])
        # The cascade (ticketflow.models.cascade): a head set on static vectors that decides the
        # rows whose confidence reaches these per-target thresholds; None = transformer only.
        self.first_stage = first_stage
        self.escalation_thresholds = dict(escalation_thresholds or {})

    def __setstate__(self, state: dict[str, object]) -> None:
        # Artifacts pickled before features/calibration existed load as embedding-only models.
        state.setdefault("features", None)
        state.setdefault("temperatures", {})
        state.setdefault("review_thresholds", {})
        state.setdefault("first_stage", None)
        state.setdefault("escalation_thresholds", {})
        state.setdefault("review_gate", [])  # older models: gated by their first target
        self.__dict__.update(state)

    @property
    def targets(self) -> list[str]:
        return list(self.heads)

    @property
    def uses_text(self) -> bool:
        """Whether :meth:`predict` needs the ticket texts next to the vectors."""
        return self.features is not None and self.features.uses_text

    @property
    def description(self) -> str:
        name = self.features.config.name if self.features is not None else "emb"
        calibrated = "+temperature" if self.temperatures else ""
        cascade = f" after {self.first_stage.description}" if self.first_stage else ""
        return f"LogisticRegression[{name}]{calibrated}{cascade}"

    def labels(self, target: str) -> list[str]:
        return [str(c) for c in self.heads[target].classes_]

    def transform(
        self,
        vectors: npt.NDArray[np.float32],
        texts: Sequence[str] | None = None,
        *,
        text_blocks: sp.csr_matrix | None = None,
    ) -> Features:
        if self.features is None:
            return vectors
        return self.features.transform(texts, vectors, text_blocks=text_blocks)

    @classmethod
    def fit(
        cls,
        vectors: npt.NDArray[np.float32],
        labels: Mapping[str, Sequence[str]],
        *,
        texts: Sequence[str] | None = None,
        features: FeatureConfig | None = None,
        c: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2_000,
        seed: int = 42,
    ) -> TicketClassifier:
        """Fit the features (TF-IDF needs ``texts``) and one head per target.

        Without ``features`` the heads read the raw embedding (the original model).
        """
        for target, y in labels.items():
            if len(set(y)) < 2:
                raise ValueError(f"target {target!r} needs at least two classes, got {set(y)}")
        fitted: TextFeatures | None = None
        matrix: Features = vectors
        if features is not None and features != EMBEDDING_ONLY:
            if texts is None and (features.word or features.char):
                raise ValueError(f"features {features.name} need the ticket texts")
            fitted = TextFeatures(features).fit(texts or [], vectors)
            matrix = fitted.transform(texts, vectors)
        heads: dict[str, LogisticRegression] = {}
        for target, y in labels.items():
            head = new_head(c=c, class_weight=class_weight, max_iter=max_iter, seed=seed)
            head.fit(matrix, np.asarray(y))
            heads[target] = head
            logger.info("fitted %s head: %d classes", target, len(head.classes_))
        return cls(heads, features=fitted)

    def predict_proba(
        self,
        vectors: npt.NDArray[np.float32],
        texts: Sequence[str] | None = None,
        *,
        text_blocks: sp.csr_matrix | None = None,
    ) -> dict[str, npt.NDArray[np.float64]]:
        matrix = self.transform(vectors, texts, text_blocks=text_blocks)
        out: dict[str, npt.NDArray[np.float64]] = {}
        for target, head in self.heads.items():
            temperature = self.temperatures.get(target)
            if temperature is None:
                out[target] = np.asarray(head.predict_proba(matrix))
            else:
                out[target] = apply_temperature(head_logits(head, matrix), temperature)
        return out

    def predict(
        self,
        vectors: npt.NDArray[np.float32],
        texts: Sequence[str] | None = None,
        *,
        top_k: int = 3,
        text_blocks: sp.csr_matrix | None = None,
    ) -> list[dict[str, Prediction]]:
        """One ``{target: Prediction}`` per row of ``vectors`` (``texts``: same rows;
        ``text_blocks``: their TF-IDF rows, when already built)."""
        results: list[dict[str, Prediction]] = [{} for _ in range(len(vectors))]
        if not results:
            return results
        for target, proba in self.predict_proba(vectors, texts, text_blocks=text_blocks).items():
            classes = self.labels(target)
            order = np.argsort(-proba, axis=1)[:, :top_k]
            for row, best in enumerate(order):
                top = tuple((classes[i], float(proba[row, i])) for i in best)
                results[row][target] = Prediction(label=top[0][0], probability=top[0][1], top=top)
        return results
