"""The review cuts a model serves with: a flag per target, and the gate that holds a ticket
(moved here from test_classifier.py with the helpers ReviewCuts replaced)."""

import pytest

from tests.models.test_classifier import fitted
from ticketflow.models.classifier import Prediction, TicketClassifier
from ticketflow.models.review import ReviewCuts, ReviewPolicy

pytestmark = pytest.mark.unit


def _prediction(label: str, probability: float) -> Prediction:
    return Prediction(label=label, probability=probability, top=((label, probability),))


def test_only_the_gate_targets_hold_a_ticket_each_target_is_flagged_on_its_own() -> None:
    # Sure of its queue, unsure of its priority: routed by queue, priority to be checked.
    predictions = {"queue": _prediction("Billing", 0.95), "priority": _prediction("high", 0.89)}
    thresholds = {"queue": 0.835, "priority": 0.9}
    assert ReviewCuts(thresholds, ("queue",)).flags(predictions) == {
        "queue": False,
        "priority": True,
    }
    assert not ReviewCuts(thresholds, ("queue",)).holds(predictions)
    assert ReviewCuts(thresholds, ("queue", "priority")).holds(predictions)
    assert ReviewCuts(thresholds, ("priority",)).holds(predictions)
    unsure_queue = {**predictions, "queue": _prediction("Billing", 0.80)}
    assert ReviewCuts(thresholds, ("queue",)).holds(unsure_queue)


def test_review_gate_is_the_models_own_else_its_first_target() -> None:
    classifier, _ = fitted()
    assert classifier.targets == ["queue", "priority"]
    assert ReviewPolicy().cuts(classifier).gate == ("queue",)  # the routing target
    gated = TicketClassifier(classifier.heads, review_gate=["queue", "priority"])
    assert ReviewPolicy().cuts(gated).gate == ("queue", "priority")


def test_cuts_are_the_models_own_thresholds_else_the_policys() -> None:
    classifier, _ = fitted()
    own = TicketClassifier(classifier.heads, review_thresholds={"queue": 0.7})
    assert ReviewPolicy(threshold=0.5).cuts(own).thresholds == {"queue": 0.7, "priority": 0.5}


def test_an_audit_share_of_the_tickets_the_gate_lets_through_is_held_by_ticket_id() -> None:
    cuts = ReviewCuts(thresholds={"queue": 0.8}, gate=("queue",), audit_share=0.2)
    sure = {"queue": _prediction("IT", 0.95)}
    unsure = {"queue": _prediction("IT", 0.5)}
    drawn = [cuts.audits(f"T-{i}", sure) for i in range(5_000)]
    assert 0.18 < sum(drawn) / len(drawn) < 0.22
    assert drawn == [cuts.audits(f"T-{i}", sure) for i in range(5_000)]  # a replay: the same
    # An unsure ticket is held anyway: it is not an audit.
    assert not any(cuts.audits(f"T-{i}", unsure) for i in range(1_000))
    off = ReviewCuts(thresholds={"queue": 0.8}, gate=("queue",))
    assert not any(off.audits(f"T-{i}", sure) for i in range(1_000))
    assert ReviewPolicy(audit_share=0.2).cuts(fitted()[0]).audit_share == 0.2
    with pytest.raises(ValueError, match="audit share"):
        ReviewPolicy(audit_share=1.0)
