"""One scikit-learn head per target on top of the ticket embeddings."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The prediction for one target of one ticket."""

    label: str
    probability: float
    top: tuple[tuple[str, float], ...]


class TicketClassifier:
    """Multi-target classifier: several targets share one embedding pass."""

    def __init__(self, heads: Mapping[str, LogisticRegression]) -> None:
        if not heads:
            raise ValueError("a classifier needs at least one target")
        self.heads = dict(heads)

    @property
    def targets(self) -> list[str]:
        return list(self.heads)

    def labels(self, target: str) -> list[str]:
        return [str(c) for c in self.heads[target].classes_]

    @classmethod
    def fit(
        cls,
        vectors: npt.NDArray[np.float32],
        labels: Mapping[str, Sequence[str]],
        *,
        c: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2_000,
        seed: int = 42,
    ) -> TicketClassifier:
        heads: dict[str, LogisticRegression] = {}
        for target, y in labels.items():
            if len(set(y)) < 2:
                raise ValueError(f"target {target!r} needs at least two classes, got {set(y)}")
            head = LogisticRegression(
                C=c, class_weight=class_weight, max_iter=max_iter, random_state=seed
            )
            head.fit(vectors, np.asarray(y))
            heads[target] = head
            logger.info("fitted %s head: %d classes", target, len(head.classes_))
        return cls(heads)

    def predict_proba(self, vectors: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float64]]:
        return {t: np.asarray(h.predict_proba(vectors)) for t, h in self.heads.items()}

    def predict(
        self, vectors: npt.NDArray[np.float32], *, top_k: int = 3
    ) -> list[dict[str, Prediction]]:
        """One ``{target: Prediction}`` per row of ``vectors``."""
        results: list[dict[str, Prediction]] = [{} for _ in range(len(vectors))]
        if not results:
            return results
        for target, proba in self.predict_proba(vectors).items():
            classes = self.labels(target)
            order = np.argsort(-proba, axis=1)[:, :top_k]
            for row, best in enumerate(order):
                top = tuple((classes[i], float(proba[row, i])) for i in best)
                results[row][target] = Prediction(label=top[0][0], probability=top[0][1], top=top)
        return results
