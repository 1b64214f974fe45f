"""Synthetic monitor data: tickets as a mixture of queue clusters in embedding space."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ticketflow.monitoring.drift import MonitorSample

QUEUES = ("tech", "product", "it", "billing", "returns", "sales")
WEIGHTS = (0.30, 0.20, 0.16, 0.15, 0.11, 0.08)
DIMENSION = 384


def centers(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(QUEUES), DIMENSION))


def make_sample(
    n: int,
    *,
    seed: int,
    weights: Sequence[float] = WEIGHTS,
    noise: float = 1.2,
    length_scale: float = 1.0,
    german: float = 0.06,
) -> MonitorSample:
    """``n`` tickets: queue drawn with ``weights``, vector = centre + noise (L2-normalised)."""
    rng = np.random.default_rng(seed)
    queue = rng.choice(len(QUEUES), size=n, p=np.asarray(weights) / np.sum(weights))
    vectors = centers()[queue] + rng.normal(scale=noise, size=(n, DIMENSION))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # The classifier is right 85% of the time, with confidence ~ Beta(5, 2).
    wrong = rng.random(n) < 0.15
    predicted = np.where(wrong, rng.integers(0, len(QUEUES), n), queue)
    confidence = rng.beta(5, 2, size=n)
    priority = rng.choice(["low", "medium", "high"], size=n, p=[0.3, 0.5, 0.2])
    return MonitorSample(
        vectors=vectors.astype(np.float32),
        labels={
            "queue": [QUEUES[i] for i in predicted],
            "priority": [str(p) for p in priority],
        },
        probabilities={
            "queue": [float(c) for c in confidence],
            "priority": [float(c) for c in rng.beta(4, 2, size=n)],
        },
        text_lengths=[int(x) for x in rng.lognormal(5.5, 0.5, size=n) * length_scale],
        languages=["de" if rng.random() < german else "en" for _ in range(n)],
        needs_review=[bool(c < 0.6) for c in confidence],
    )
