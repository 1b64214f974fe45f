"""Pure drift logic on synthetic data: no wolf cried on identical data, real shifts caught."""

from __future__ import annotations

import numpy as np
import pytest

from tests.monitoring.synthetic import WEIGHTS, make_sample
from ticketflow.monitoring.drift import (
    DriftConfig,
    categorical_drift,
    concat,
    detect_drift,
    numerical_drift,
    rate_drift,
    subsample,
)

pytestmark = pytest.mark.unit

SHIFTED_MIX = (0.05, 0.05, 0.05, 0.40, 0.40, 0.05)  # billing and returns take over


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return make_sample(2000, seed=0)


@pytest.mark.parametrize("window", [100, 200, 500])
def test_identical_distribution_never_drifts_over_many_windows(reference, window) -> None:  # type: ignore[no-untyped-def]
    results = [detect_drift(reference, make_sample(window, seed=s)) for s in range(1, 9)]
    assert [r.drifted for r in results] == [False] * 8
    drifted = [(f.feature, f.score) for r in results for f in r.features if f.drifted]
    assert drifted == []
    assert all(r.window_size == window for r in results)


def test_shifted_queue_mix_drifts_in_every_window(reference) -> None:  # type: ignore[no-untyped-def]
    results = [
        detect_drift(reference, make_sample(200, seed=s, weights=SHIFTED_MIX)) for s in (101, 102)
    ]
    assert all(r.drifted for r in results)
    for r in results:
        assert r.embedding.drifted
        assert r.feature("label:queue").drifted
        assert not r.feature("label:priority").drifted
        assert r.label_shares["queue"]["billing"] > 0.25


def test_text_length_and_language_shifts_are_flagged_per_feature(reference) -> None:  # type: ignore[no-untyped-def]
    result = detect_drift(reference, make_sample(300, seed=7, length_scale=2.0, german=0.6))
    assert result.feature("text_length").drifted
    assert result.feature("language").drifted
    assert not result.feature("label:queue").drifted
    assert result.share_drifted == pytest.approx(2 / len(result.features))


@pytest.mark.parametrize("method", ["mmd", "distance"])
def test_other_embedding_methods(reference, method) -> None:  # type: ignore[no-untyped-def]
    config = DriftConfig(embedding_method=method)
    same = [detect_drift(reference, make_sample(300, seed=s), config) for s in range(20, 25)]
    assert not any(r.embedding.drifted for r in same)
    shifted = detect_drift(reference, make_sample(300, seed=30, weights=SHIFTED_MIX), config)
    assert shifted.embedding.drifted
    assert shifted.embedding.method == method


def test_categorical_needs_significance_and_effect() -> None:
    ref = ["a"] * 500 + ["b"] * 500
    # 52/48 on 100k: significant but negligible -> no drift.
    big = ["a"] * 52_000 + ["b"] * 48_000
    result = categorical_drift("x", ref, big, p_value=0.001, min_distance=0.1)
    assert result.p_value is not None and result.p_value < 0.001
    assert not result.drifted
    unseen = categorical_drift("x", ref, ["c"] * 100, p_value=0.001, min_distance=0.1)
    assert unseen.drifted


def test_numerical_and_rate_drift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=2000).tolist()
    assert not numerical_drift(
        "x", ref, rng.normal(size=300).tolist(), p_value=1e-3, min_distance=0.1
    ).drifted
    assert numerical_drift(
        "x", ref, (rng.normal(size=300) + 1).tolist(), p_value=1e-3, min_distance=0.1
    ).drifted
    base = [True] * 200 + [False] * 800
    assert not rate_drift(
        "r", base, [True] * 22 + [False] * 78, p_value=1e-3, min_difference=0.05
    ).drifted
    assert rate_drift(
        "r", base, [True] * 60 + [False] * 40, p_value=1e-3, min_difference=0.05
    ).drifted


def test_sample_helpers(reference) -> None:  # type: ignore[no-untyped-def]
    small = subsample(reference, 100, seed=3)
    assert len(small) == 100 and small.vectors.shape == (100, reference.vectors.shape[1])
    assert subsample(reference, 100, seed=3).text_lengths == small.text_lengths
    both = concat([small, small])
    assert len(both) == 200 and both.needs_review is not None
    with pytest.raises(ValueError):
        type(small)(
            vectors=small.vectors,
            labels={"queue": ["a"]},
            probabilities={},
            text_lengths=small.text_lengths,
            languages=small.languages,
        )
    assert sum(WEIGHTS) == pytest.approx(1.0)


def _with_review(sample, cuts):  # type: ignore[no-untyped-def]
    """``sample`` with per-target review flags at ``cuts``, gated by queue."""
    flags = {t: [c < cuts[t] for c in sample.probabilities[t]] for t in cuts}
    sample.needs_review_by_target = flags
    sample.needs_review = list(flags["queue"])
    return sample


def test_review_rates_are_compared_per_target(reference) -> None:  # type: ignore[no-untyped-def]
    cuts = {"queue": 0.6, "priority": 0.6}
    ref = _with_review(make_sample(2000, seed=0), cuts)
    same = detect_drift(ref, _with_review(make_sample(300, seed=5), cuts))
    names = [f.feature for f in same.features]
    assert "needs_review:queue" in names and "needs_review:priority" in names
    assert "needs_review" not in names  # the gate's rate is the queue's: not counted twice
    assert not same.drifted
    # Priority gets unsure, queue does not: only priority's review rate drifts.
    window = _with_review(make_sample(300, seed=6), cuts)
    window.probabilities["priority"] = [p * 0.6 for p in window.probabilities["priority"]]
    window = _with_review(window, cuts)
    shifted = detect_drift(ref, window)
    assert shifted.feature("needs_review:priority").drifted
    assert not shifted.feature("needs_review:queue").drifted
    # A side without per-target flags (an older reference): the ticket-level rate instead.
    older = detect_drift(reference, window)
    assert [f.feature for f in older.features if f.feature.startswith("needs_review")] == [
        "needs_review"
    ]


def test_sample_helpers_keep_per_target_review_flags() -> None:
    cuts = {"queue": 0.6, "priority": 0.7}
    sample = _with_review(make_sample(300, seed=2), cuts)
    small = subsample(sample, 50, seed=1)
    for target, cut in cuts.items():
        assert small.needs_review_by_target[target] == [
            p < cut for p in small.probabilities[target]
        ]
    both = concat([small, small])
    assert both.needs_review_by_target["priority"] == small.needs_review_by_target["priority"] * 2
    assert concat([small, make_sample(10, seed=3)]).needs_review_by_target == {}
    with pytest.raises(ValueError):
        type(small)(
            vectors=small.vectors,
            labels=small.labels,
            probabilities=small.probabilities,
            text_lengths=small.text_lengths,
            languages=small.languages,
            needs_review_by_target={"queue": [True]},
        )
