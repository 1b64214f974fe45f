"""The worker's review counters (per target, tickets held by the review gate) and the
corrections counter (live accuracy)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.helpers import incident_event
from ticketflow.schemas import IncidentEvent, IncidentStatus, LabeledTicket
from ticketflow.stream.metrics import MAX_CLASS_NAMES, OTHER_LABEL, WorkerMetrics

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


def test_corrections_are_counted_with_confirmations_and_bounded_class_names() -> None:
    metrics = WorkerMetrics()
    metrics.count_correction("queue", "Billing", "Refunds")
    metrics.count_correction("queue", "Billing", "Refunds")
    metrics.count_correction("queue", "Billing", "Billing")  # a confirmation
    value = metrics.registry.get_sample_value

    def count(predicted: str, corrected: str, changed: str) -> float | None:
        labels = {"target": "queue", "predicted": predicted, "corrected": corrected}
        return value("ticketflow_corrections_total", {**labels, "changed": changed})

    assert count("Billing", "Refunds", "true") == 2
    assert count("Billing", "Billing", "false") == 1
    assert count("Billing", "Refunds", "false") is None
    # Agents can send any string: past MAX_CLASS_NAMES names per target, new ones are lumped.
    for n in range(MAX_CLASS_NAMES + 20):
        metrics.count_correction("queue", "Billing", f"typo-{n}")
    series = [
        s
        for family in metrics.registry.collect()
        if family.name == "ticketflow_corrections"
        for s in family.samples
        if s.name == "ticketflow_corrections_total"
    ]
    names = {s.labels["corrected"] for s in series}
    assert len(names) == MAX_CLASS_NAMES + 1 and OTHER_LABEL in names
    lumped = [s for s in series if s.labels["corrected"] == OTHER_LABEL]
    assert [s.labels["changed"] for s in lumped] == ["true"] and lumped[0].value == 22
    # a known class still counts under its own name, and each target has its own budget
    metrics.count_correction("queue", "Refunds", "Billing")
    assert count("Refunds", "Billing", "true") == 1
    metrics.count_correction("priority", "high", "low")
    assert (
        value(
            "ticketflow_corrections_total",
            {"target": "priority", "predicted": "high", "corrected": "low", "changed": "true"},
        )
        == 1
    )


def test_the_served_models_correction_series_start_at_zero_and_are_never_capped() -> None:
    """increase() misses the first count of a series born with it: the model's classes get
    theirs at 0 when it is set, and the cap on agents' names never lumps them."""
    metrics = WorkerMetrics()
    for n in range(MAX_CLASS_NAMES):
        metrics.count_correction("queue", "Billing", f"typo-{n}")
    metrics.set_model("v2", "enc", classes={"queue": ["Billing", "IT", "Sales"], "big": []})
    value = metrics.registry.get_sample_value
    for predicted in ("Billing", "IT", "Sales"):
        for corrected in ("Billing", "IT", "Sales"):
            changed = "true" if predicted != corrected else "false"
            labels = {"target": "queue", "predicted": predicted, "corrected": corrected}
            assert value("ticketflow_corrections_total", {**labels, "changed": changed}) == 0, (
                labels
            )
    metrics.count_correction("queue", "Sales", "IT")  # past the cap, but the model's classes
    labels = {"target": "queue", "predicted": "Sales", "corrected": "IT", "changed": "true"}
    assert value("ticketflow_corrections_total", labels) == 1
    metrics.count_correction("queue", "Sales", "Marketing")  # not the model's: lumped
    labels = {"target": "queue", "predicted": "Sales", "corrected": OTHER_LABEL, "changed": "true"}
    assert value("ticketflow_corrections_total", labels) == 1
    assert value("ticketflow_model_info", {"version": "v2", "embedding_model": "enc"}) == 1


def _incident(incident_id: str, status: IncidentStatus, members: list[str]) -> IncidentEvent:
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    return incident_event(incident_id, status, members, start=start, terms=["x"], labels={})


def test_a_merged_incident_is_not_counted_at_close_its_members_are_in_the_other() -> None:
    metrics = WorkerMetrics()
    absorbed = _incident("inc-de", IncidentStatus.CLOSED, ["d1", "d2"]).model_copy(
        update={"merged_into": "inc-en"}
    )
    kept = _incident("inc-en", IncidentStatus.UPDATED, ["e1", "e2", "d1", "d2"])
    metrics.count_incidents([absorbed, kept], 1)
    assert metrics.registry.get_sample_value("ticketflow_incident_size_count") == 0
    assert metrics.registry.get_sample_value("ticketflow_incident_largest_open_size") == 4
    metrics.count_incidents([_incident("inc-en", IncidentStatus.CLOSED, kept.member_ticket_ids)], 0)
    assert metrics.registry.get_sample_value("ticketflow_incident_size_count") == 1
    assert metrics.registry.get_sample_value("ticketflow_incident_size_sum") == 4
