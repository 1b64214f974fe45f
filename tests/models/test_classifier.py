import numpy as np
import pytest

from models.classifier import TicketClassifier
from tests.helpers import HashingEncoder

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
