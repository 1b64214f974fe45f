"""The worker's review counters: per target, and tickets held by the review gate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ticketflow.monitoring.metrics import WorkerMetrics
from ticketflow.schemas import LabeledTicket

pytestmark = pytest.mark.unit


def _labeled(queue: bool, priority: bool) -> LabeledTicket:
    def prediction(flag: bool) -> dict[str, object]:
        return {
            "label": "x",
            "probability": 0.5,
            "top": [],
            "needs_review": flag,
            "review_threshold": 0.8,
        }

    return LabeledTicket.model_validate(
        {
            "ticket_id": "T",
            "predictions": {"queue": prediction(queue), "priority": prediction(priority)},
            "needs_review": queue,
            "review_gate": ["queue"],
            "model_version": "v1",
            "embedding_model": "m",
            "event_time": None,
            "processed_time": datetime.now(UTC),
            "source": {"topic": "tickets", "partition": 0, "offset": 0},
        }
    )


def test_review_is_counted_per_target_and_per_held_ticket() -> None:
    metrics = WorkerMetrics()
    metrics.count_review([_labeled(False, True), _labeled(False, True), _labeled(True, True)])
    registry = metrics.registry
    assert registry.get_sample_value("ticketflow_tickets_held_for_review_total") == 1
    for target, count in (("queue", 1), ("priority", 3)):
        value = registry.get_sample_value(
            "ticketflow_tickets_needs_review_total", {"target": target}
        )
        assert value == count
    # A target that needed no review still has its series, at 0, for rate() to work.
    metrics = WorkerMetrics()
    metrics.count_review([_labeled(False, False)])
    assert (
        metrics.registry.get_sample_value(
            "ticketflow_tickets_needs_review_total", {"target": "priority"}
        )
        == 0
    )
