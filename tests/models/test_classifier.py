import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from tests.helpers import HashingEncoder
from ticketflow.models.classifier import (
    TicketClassifier,
    fit_temperature,
    threshold_for_precision,
)
from ticketflow.models.features import HYBRID
from ticketflow.models.review import ReviewPolicy

pytestmark = pytest.mark.unit

TEXTS = [
    "refund my invoice payment",
    "charged twice on my credit card",
    "invoice total is wrong",
    "billing address update for payment",
    "printer does not print",
    "laptop screen is broken",
    "vpn cannot connect to network",
    "keyboard stopped working",
] * 5
QUEUES = ["Billing"] * 4 + ["IT"] * 4
PRIORITY = ["low", "high"] * 4


def fitted() -> tuple[TicketClassifier, np.ndarray]:
    vectors = HashingEncoder().encode(TEXTS)
    labels = {"queue": QUEUES * 5, "priority": PRIORITY * 5}
    return TicketClassifier.fit(vectors, labels), vectors


def test_predicts_every_target_with_sorted_top3() -> None:
    classifier, _ = fitted()
    vectors = HashingEncoder().encode(["my invoice was charged twice", "the printer is broken"])
    predictions = classifier.predict(vectors)
    assert [p["queue"].label for p in predictions] == ["Billing", "IT"]
    for p in predictions:
        assert set(p) == {"queue", "priority"}
        top = p["queue"].top
        assert len(top) == 2  # only two classes exist
        assert top[0][1] >= top[1][1]
        assert p["queue"].probability == pytest.approx(top[0][1])
        assert sum(prob for _, prob in top) == pytest.approx(1.0)


def test_labels_are_the_training_classes() -> None:
    classifier, _ = fitted()
    assert classifier.targets == ["queue", "priority"]
    assert classifier.labels("queue") == ["Billing", "IT"]


def test_single_class_target_is_refused() -> None:
    vectors = HashingEncoder().encode(TEXTS[:4])
    with pytest.raises(ValueError, match="two classes"):
        TicketClassifier.fit(vectors, {"queue": ["A"] * 4})


def test_empty_batch_gives_no_predictions() -> None:
    classifier, _ = fitted()
    assert classifier.predict(np.zeros((0, 256), dtype=np.float32)) == []


def test_hybrid_classifier_needs_and_uses_the_texts() -> None:
    encoder = HashingEncoder()
    vectors = encoder.encode(TEXTS)
    classifier = TicketClassifier.fit(vectors, {"queue": QUEUES * 5}, texts=TEXTS, features=HYBRID)
    assert classifier.uses_text
    new = ["my invoice was charged twice", "the printer is broken"]
    predictions = classifier.predict(encoder.encode(new), new)
    assert [p["queue"].label for p in predictions] == ["Billing", "IT"]
    with pytest.raises(ValueError, match="need the ticket texts"):
        classifier.predict(encoder.encode(new))


def test_temperature_changes_confidence_not_labels() -> None:
    classifier, vectors = fitted()
    before = classifier.predict(vectors)
    classifier.temperatures = {"queue": 3.0}
    after = classifier.predict(vectors)
    assert [p["queue"].label for p in before] == [p["queue"].label for p in after]
    assert all(
        a["queue"].probability < b["queue"].probability for a, b in zip(after, before, strict=True)
    )


def test_artifacts_pickled_before_features_existed_still_load() -> None:
    classifier, vectors = fitted()
    old_state = {"heads": classifier.heads}  # what the first registry format pickled
    restored = TicketClassifier.__new__(TicketClassifier)
    restored.__setstate__(dict(old_state))
    assert restored.features is None and restored.review_thresholds == {}
    assert restored.review_gate == [] and ReviewPolicy().cuts(restored).gate == ("queue",)
    assert not restored.uses_text
    assert (
        restored.predict(vectors)[0]["queue"].label == classifier.predict(vectors)[0]["queue"].label
    )


def test_fit_temperature_recovers_an_overconfident_scale() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 4)) * 2
    y = np.asarray([rng.choice(4, p=p) for p in softmax(true_logits, axis=1)])
    # A model three times too confident: the fitted temperature undoes it.
    assert fit_temperature(np.asarray(log_softmax(3 * true_logits, axis=1)), y) == pytest.approx(
        3.0, rel=0.1
    )


def test_threshold_for_precision_routes_the_most_tickets_at_that_precision() -> None:
    confidence = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
    correct = [True, True, True, False, True, False]
    threshold, coverage = threshold_for_precision(confidence, correct, 0.8)
    assert (threshold, coverage) == (0.7, 5 / 6)  # 4 of 5 right
    assert threshold_for_precision(confidence, correct, 0.95) == (0.9, 0.5)
    cut, covered = threshold_for_precision([0.9, 0.8], [False, False], 0.9)
    assert covered == 0.0 and cut > 1.0  # nothing reaches it: route nothing


def test_tied_confidences_are_routed_together() -> None:
    # Cutting inside a tie is impossible, so the 0.9 group counts as one.
    threshold, coverage = threshold_for_precision([0.9, 0.9, 0.5], [True, False, True], 0.9)
    assert coverage == 0.0 and threshold > 1.0


def test_a_review_gate_must_name_targets_of_the_model() -> None:
    classifier, _ = fitted()
    with pytest.raises(ValueError, match="names no target"):
        TicketClassifier(classifier.heads, review_gate=["type"])
