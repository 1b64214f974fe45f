"""Pure drift logic: one window of labelled tickets against the model's reference set.

Features monitored per window:

* ``embedding``: the sentence embeddings, scored by one of Evidently's embedding drift
  methods called directly (``evidently.metrics.embeddings``: ``MMDDriftMethod`` by default;
  ``ModelDriftMethod``, ``DistanceDriftMethod``, ``RatioDriftMethod``). In Evidently 0.7 the
  method returns a score; the threshold is ours (:data:`EMBEDDING_THRESHOLDS`).
* ``label:<target>`` and ``language`` (categorical): chi-square test of the window's counts
  against the reference proportions, effect size = Jensen-Shannon distance (base 2).
* ``confidence:<target>`` and ``text_length`` (numerical): two-sample Kolmogorov-Smirnov
  test, effect size = Wasserstein distance divided by the reference's standard deviation.
* ``needs_review:<target>``: the target's review rate (the share of tickets whose prediction
  of it was below its cut; chi-square test), effect size = absolute difference. Samples
  without per-target flags (older references and workers) compare ``needs_review``, the
  ticket-level rate, instead: the ticket's flag is the gate's targets' flags combined, so it
  adds nothing when the per-target rates are there.

A tabular feature drifts only when the test is significant at ``p_value`` (default 0.001)
**and** the effect is larger than its minimum: sampling noise of identical distributions
does not pass the first condition, huge windows with negligible shifts do not pass the second.
Per-column tests at p<0.05 flag identical columns all the time; this does not.
The window drifts when the embedding drifts or when at least ``share_threshold`` of the
features drift.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
EmbeddingMethod = Literal["mmd", "model", "distance", "ratio"]

# Evidently's own defaults; the score of the method is compared with these (score > threshold).
EMBEDDING_THRESHOLDS: dict[str, float] = {
    "mmd": 0.015,
    "model": 0.55,
    "distance": 0.2,
    "ratio": 0.2,
}
MIN_JS_DISTANCE = 0.1  # categorical effect size (Jensen-Shannon distance, base 2, 0..1)
MIN_WASSERSTEIN = 0.1  # numerical effect size (Wasserstein / reference std)
MIN_RATE_DIFFERENCE = 0.05  # review rates, absolute
OTHER = "__other__"  # category of the window unseen in the reference


@dataclass
class MonitorSample:
    """Columns of a set of labelled tickets (the reference or one window), row-aligned."""

    vectors: FloatArray  # (n, dimension)
    labels: dict[str, list[str]]  # target -> predicted label per row
    probabilities: dict[str, list[float]]  # target -> confidence per row
    text_lengths: list[int]
    languages: list[str | None]
    needs_review: list[bool] | None = None  # the ticket's flag (its review gate)
    # target -> that target's review flag per row; empty when not known (older samples)
    needs_review_by_target: dict[str, list[bool]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.text_lengths)

    def __post_init__(self) -> None:
        n = len(self.text_lengths)
        columns = [
            len(self.vectors),
            len(self.languages),
            *(len(v) for v in self.labels.values()),
            *(len(v) for v in self.probabilities.values()),
            *(len(v) for v in self.needs_review_by_target.values()),
        ]
        if self.needs_review is not None:
            columns.append(len(self.needs_review))
        if any(c != n for c in columns):
            raise ValueError(f"columns of different lengths: {n} rows vs {columns}")


@dataclass(frozen=True)
class DriftConfig:
    embedding_method: EmbeddingMethod = "mmd"
    embedding_threshold: float | None = None  # None = EMBEDDING_THRESHOLDS[method]
    p_value: float = 0.001
    share_threshold: float = 0.5
    min_js_distance: float = MIN_JS_DISTANCE
    min_wasserstein: float = MIN_WASSERSTEIN
    min_rate_difference: float = MIN_RATE_DIFFERENCE
    max_reference_rows: int = 1000  # the embedding methods scale with n^2
    seed: int = 0

    @property
    def threshold(self) -> float:
        if self.embedding_threshold is not None:
            return self.embedding_threshold
        return EMBEDDING_THRESHOLDS[self.embedding_method]


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: float | None = None


@dataclass
class DriftResult:
    features: list[FeatureResult]
    drifted: bool
    share_drifted: float
    window_size: int
    seconds: float = 0.0
    label_shares: dict[str, dict[str, float]] = field(default_factory=dict)

    def feature(self, name: str) -> FeatureResult:
        return next(f for f in self.features if f.feature == name)

    @property
    def embedding(self) -> FeatureResult:
        return self.feature("embedding")


def embedding_drift(
    reference: FloatArray,
    current: FloatArray,
    *,
    method: EmbeddingMethod = "mmd",
    threshold: float | None = None,
) -> FeatureResult:
    """Score the window's embeddings with one of Evidently's drift methods, called directly."""
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    limit = EMBEDDING_THRESHOLDS[method] if threshold is None else threshold
    implementations = {
        "mmd": MMDDriftMethod,
        "model": ModelDriftMethod,
        "distance": DistanceDriftMethod,
        "ratio": RatioDriftMethod,
    }
    drift_method = implementations[method](threshold=limit)
    columns = [f"e{i}" for i in range(reference.shape[1])]
    ref = pd.DataFrame(np.asarray(reference, dtype=np.float64), columns=columns)
    cur = pd.DataFrame(np.asarray(current, dtype=np.float64), columns=columns)
    score, _, _ = drift_method(cur, ref)
    score = float(score)
    return FeatureResult("embedding", method, score, limit, score > limit)


def _shares(values: Sequence[str]) -> dict[str, float]:
    counts = Counter(values)
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.items()}


def categorical_drift(
    feature: str,
    reference: Sequence[str],
    current: Sequence[str],
    *,
    p_value: float,
    min_distance: float,
) -> FeatureResult:
    """Chi-square goodness of fit of the window against the reference mix; JS distance."""
    ref_counts = Counter(reference)
    categories = sorted(ref_counts)
    cur_counts = Counter(v if v in ref_counts else OTHER for v in current)
    if cur_counts.get(OTHER):
        categories.append(OTHER)
    n_ref, n_cur = len(reference), len(current)
    # Add-half smoothing: a category unseen in the reference is unexpected, not impossible.
    ref_p = np.array([ref_counts.get(c, 0) + 0.5 for c in categories], dtype=np.float64)
    ref_p /= ref_p.sum()
    observed = np.array([cur_counts.get(c, 0) for c in categories], dtype=np.float64)
    if len(categories) < 2 or n_cur == 0 or n_ref == 0:
        return FeatureResult(feature, "jensenshannon", 0.0, min_distance, False, 1.0)
    p = float(stats.chisquare(observed, ref_p * n_cur).pvalue)
    cur_p = observed / n_cur
    distance = _js_distance(ref_p, cur_p)
    return FeatureResult(
        feature, "jensenshannon", distance, min_distance, p < p_value and distance > min_distance, p
    )


def _js_distance(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]) -> float:
    m = (p + q) / 2

    def kl(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def numerical_drift(
    feature: str,
    reference: Sequence[float],
    current: Sequence[float],
    *,
    p_value: float,
    min_distance: float,
) -> FeatureResult:
    """Kolmogorov-Smirnov test; effect size = Wasserstein distance / reference std."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if len(ref) == 0 or len(cur) == 0:
        return FeatureResult(feature, "wasserstein", 0.0, min_distance, False, 1.0)
    p = float(stats.ks_2samp(ref, cur).pvalue)
    scale = float(np.std(ref)) or 1.0
    distance = float(stats.wasserstein_distance(ref, cur)) / scale
    return FeatureResult(
        feature, "wasserstein", distance, min_distance, p < p_value and distance > min_distance, p
    )


def rate_drift(
    feature: str,
    reference: Sequence[bool],
    current: Sequence[bool],
    *,
    p_value: float,
    min_difference: float,
) -> FeatureResult:
    """A yes/no rate: chi-square test of the window's count; effect = absolute difference."""
    n_ref, n_cur = len(reference), len(current)
    if n_ref == 0 or n_cur == 0:
        return FeatureResult(feature, "rate_difference", 0.0, min_difference, False, 1.0)
    ref_rate = (sum(reference) + 0.5) / (n_ref + 1)
    cur_yes = sum(current)
    expected = np.array([ref_rate * n_cur, (1 - ref_rate) * n_cur])
    p = float(stats.chisquare([cur_yes, n_cur - cur_yes], expected).pvalue)
    difference = abs(cur_yes / n_cur - ref_rate)
    drifted = p < p_value and difference > min_difference
    return FeatureResult(feature, "rate_difference", difference, min_difference, drifted, p)


def subsample(sample: MonitorSample, rows: int, seed: int = 0) -> MonitorSample:
    """At most ``rows`` rows, drawn without replacement (the same ones for the same seed)."""
    if len(sample) <= rows:
        return sample
    index = np.sort(np.random.default_rng(seed).choice(len(sample), rows, replace=False))
    take = index.tolist()
    return MonitorSample(
        vectors=sample.vectors[index],
        labels={t: [v[i] for i in take] for t, v in sample.labels.items()},
        probabilities={t: [v[i] for i in take] for t, v in sample.probabilities.items()},
        text_lengths=[sample.text_lengths[i] for i in take],
        languages=[sample.languages[i] for i in take],
        needs_review=(
            None if sample.needs_review is None else [sample.needs_review[i] for i in take]
        ),
        needs_review_by_target={
            t: [v[i] for i in take] for t, v in sample.needs_review_by_target.items()
        },
    )


def _language(value: str | None) -> str:
    return (value or "unknown").lower()


def detect_drift(
    reference: MonitorSample, current: MonitorSample, config: DriftConfig = DriftConfig()
) -> DriftResult:
    """Compare one window with the reference. Pure apart from the clock used for timing."""
    started = time.perf_counter()
    ref = subsample(reference, config.max_reference_rows, config.seed)
    features = [
        embedding_drift(
            ref.vectors,
            current.vectors,
            method=config.embedding_method,
            threshold=config.threshold,
        )
    ]
    targets = [t for t in reference.labels if t in current.labels]
    for target in targets:
        features.append(
            categorical_drift(
                f"label:{target}",
                reference.labels[target],
                current.labels[target],
                p_value=config.p_value,
                min_distance=config.min_js_distance,
            )
        )
    for target in [t for t in reference.probabilities if t in current.probabilities]:
        features.append(
            numerical_drift(
                f"confidence:{target}",
                reference.probabilities[target],
                current.probabilities[target],
                p_value=config.p_value,
                min_distance=config.min_wasserstein,
            )
        )
    reviewed = [t for t in reference.needs_review_by_target if t in current.needs_review_by_target]
    for target in reviewed:
        features.append(
            rate_drift(
                f"needs_review:{target}",
                reference.needs_review_by_target[target],
                current.needs_review_by_target[target],
                p_value=config.p_value,
                min_difference=config.min_rate_difference,
            )
        )
    if not reviewed and reference.needs_review is not None and current.needs_review is not None:
        features.append(
            rate_drift(
                "needs_review",
                reference.needs_review,
                current.needs_review,
                p_value=config.p_value,
                min_difference=config.min_rate_difference,
            )
        )
    features.append(
        numerical_drift(
            "text_length",
            [float(x) for x in reference.text_lengths],
            [float(x) for x in current.text_lengths],
            p_value=config.p_value,
            min_distance=config.min_wasserstein,
        )
    )
    features.append(
        categorical_drift(
            "language",
            [_language(x) for x in reference.languages],
            [_language(x) for x in current.languages],
            p_value=config.p_value,
            min_distance=config.min_js_distance,
        )
    )
    share = sum(f.drifted for f in features) / len(features)
    drifted = features[0].drifted or share >= config.share_threshold
    return DriftResult(
        features=features,
        drifted=drifted,
        share_drifted=share,
        window_size=len(current),
        seconds=time.perf_counter() - started,
        label_shares={t: _shares(current.labels[t]) for t in targets},
    )


def concat(samples: Sequence[MonitorSample]) -> MonitorSample:
    """Rows of several samples, in order (for tests and reports)."""
    first = samples[0]
    return MonitorSample(
        vectors=np.concatenate([s.vectors for s in samples]),
        labels={t: [v for s in samples for v in s.labels[t]] for t in first.labels},
        probabilities={
            t: [v for s in samples for v in s.probabilities[t]] for t in first.probabilities
        },
        text_lengths=[v for s in samples for v in s.text_lengths],
        languages=[v for s in samples for v in s.languages],
        needs_review=(
            None
            if any(s.needs_review is None for s in samples)
            else [v for s in samples for v in s.needs_review or []]
        ),
        needs_review_by_target={
            t: [v for s in samples for v in s.needs_review_by_target[t]]
            for t in first.needs_review_by_target
            if all(t in s.needs_review_by_target for s in samples)
        },
    )


def as_mapping(result: DriftResult) -> Mapping[str, float]:
    """Feature name -> score, for logs."""
    return {f.feature: round(f.score, 4) for f in result.features}
