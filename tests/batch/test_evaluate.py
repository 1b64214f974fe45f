"""Calibration and auto-route metrics."""

import pytest

from ticketflow.batch.evaluate import confidence_metrics, expected_calibration_error

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
