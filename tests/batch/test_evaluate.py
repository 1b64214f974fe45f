"""Calibration, auto-route metrics and what the review cuts let through."""

import numpy as np
import pytest

from ticketflow.batch.evaluate import (
    bootstrap_gains,
    confidence_metrics,
    expected_calibration_error,
    format_review,
    review_routing,
    routing,
    scored,
    target_metrics,
)
from ticketflow.models.classifier import Prediction
from ticketflow.models.review import ReviewCuts

pytestmark = pytest.mark.unit


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    # Two bins: 0.5 confidence with half right, 1.0 confidence always right.
    confidence = [0.5, 0.5, 1.0, 1.0]
    assert expected_calibration_error(confidence, [True, False, True, True]) == pytest.approx(0)


def test_ece_weights_the_gap_of_each_bin_by_its_share() -> None:
    # All at 0.9 but only half right: gap 0.4 on every prediction.
    assert expected_calibration_error([0.9] * 4, [True, False] * 2) == pytest.approx(0.4)
    assert expected_calibration_error([], []) == 0.0


def test_auto_route_curve_reports_coverage_per_precision() -> None:
    metrics = confidence_metrics([0.99, 0.9, 0.8, 0.7], [True, True, False, True])
    assert metrics["auto_route"]["0.95"] == {"threshold": 0.9, "coverage": 0.5}
    assert metrics["auto_route"]["0.80"]["coverage"] == 0.5  # 3/4 < 0.8 at full coverage


def _rows(confidence: list[float], correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(confidence), np.asarray(correct)


ROWS = {
    # Four tickets: queue sure of three (two right), priority sure of one.
    "queue": _rows([0.95, 0.9, 0.85, 0.5], [True, True, False, True]),
    "priority": _rows([0.95, 0.6, 0.5, 0.4], [True, False, True, False]),
}
CUTS = {"queue": 0.85, "priority": 0.9}


def test_routing_per_target_and_for_a_gate_of_several() -> None:
    queue = routing(ROWS, CUTS, ["queue"])
    assert queue is not None
    assert (queue.coverage, queue.precision, queue.n) == (0.75, pytest.approx(2 / 3), 4)
    both = routing(ROWS, CUTS, ["queue", "priority"])
    assert both is not None and (both.coverage, both.precision) == (0.25, 1.0)
    none = routing(ROWS, {"queue": 1.01, "priority": 0.9}, ["queue"])
    assert none is not None and (none.coverage, none.precision) == (0.0, None)
    assert routing(ROWS, CUTS, ["type"]) is None  # no rows for it (e.g. no out-of-fold)


def test_review_routing_reports_targets_gate_and_all_targets() -> None:
    review = review_routing(
        cuts=ReviewCuts(CUTS, ("queue",)),
        precision_goals={"queue": 0.9},
        out_of_fold=ROWS,
        test={"queue": ROWS["queue"]},
    )
    assert review.targets["queue"].precision_goal == 0.9
    assert review.targets["priority"].precision_goal is None  # REVIEW_THRESHOLD's fallback
    assert review.gate.targets == ["queue"]
    assert review.gate.test == review.targets["queue"].test
    assert review.all_targets is not None and review.all_targets.test is None
    assert review.all_targets.out_of_fold == routing(ROWS, CUTS, ["queue", "priority"])
    text = format_review(review)
    assert "gate" in text and "[queue]" in text and "75.0% routed" in text
    every = review_routing(
        cuts=ReviewCuts(CUTS, ("queue", "priority")), precision_goals={}, out_of_fold={}, test={}
    )
    assert every.all_targets is None  # the gate is every target


def test_scored_compares_each_prediction_with_its_label() -> None:
    predictions = [
        {"queue": Prediction("Billing", 0.9, (("Billing", 0.9),))},
        {"queue": Prediction("IT", 0.6, (("IT", 0.6),))},
    ]
    rows = scored(predictions, {"queue": ["Billing", "Billing"], "type": ["a", "b"]})
    assert set(rows) == {"queue"}
    assert rows["queue"][0].tolist() == [0.9, 0.6]
    assert rows["queue"][1].tolist() == [True, False]


@pytest.mark.unit
def test_macro_f1_scores_only_the_classes_in_the_test_part() -> None:
    """Issue #30 item 4: a class with no test row is listed, not scored 0 into macro-F1."""
    from ticketflow.batch.evaluate import format_report, target_metrics

    truth = ["a", "a", "b", "b"]
    predicted = ["a", "a", "b", "a"]
    metrics = target_metrics(truth, predicted, ["a", "b", "rare"])
    # F1(a) = 0.8, F1(b) = 2/3; "rare" has no row and no prediction: not in the mean.
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics["absent"] == ["rare"]
    text = format_report({"queue": metrics})
    assert "not in the test part, left out of macro-F1: rare" in text
    assert "\n   rare " not in text


def test_bootstrap_gains_resample_the_macro_f1_the_report_gives() -> None:
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c"]
    truth = [str(x) for x in rng.choice(labels, 300)]
    before = [t if rng.random() < 0.7 else str(rng.choice(labels)) for t in truth]
    after = [t if rng.random() < 0.8 else str(rng.choice(labels)) for t in truth]
    gains = bootstrap_gains(truth, before, after, resamples=4_000, seed=0)
    observed = (
        target_metrics(truth, after, labels)["macro_f1"]
        - target_metrics(truth, before, labels)["macro_f1"]
    )
    assert abs(float(np.mean(gains)) - observed) < 0.01
    assert 0.01 < float(np.std(gains)) < 0.06  # the noise of 300 tickets, not 0
    assert np.mean(gains > 0) > 0.9
    # The same predictions: every resample gains exactly nothing.
    assert not bootstrap_gains(truth, before, before, resamples=50).any()


def test_bootstrap_gains_leave_out_classes_a_resample_has_no_ticket_of() -> None:
    # One ticket of 'rare': a resample without it averages over 'a' only, as the report would.
    truth, before, after = ["a"] * 9 + ["rare"], ["a"] * 10, ["a"] * 9 + ["rare"]
    gains = bootstrap_gains(truth, before, after, resamples=2_000, seed=1)
    without = np.isclose(gains, 0.0)
    assert 0.25 < without.mean() < 0.45  # (9/10)^10 = 0.35 of resamples miss it
    assert np.all(gains[~without] > 0)
