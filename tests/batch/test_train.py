"""Training end to end on generated tickets with a cheap real encoder: artifact, thresholds,
and the serving pipeline reading the same features."""

from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from ticketflow.batch.train import train
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.datasets import load_labeled
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import EMBEDDING_LR, ModelConfig
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import Ticket

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tickets(generate_tickets(300), tmp_path_factory.mktemp("data") / "t.jsonl")


def test_default_model_is_hybrid_calibrated_with_review_thresholds(
    sample_file: Path, tmp_path: Path
) -> None:
    data = load_labeled(sample_file, targets=["queue", "priority"], progress=False)
    registry = ModelRegistry(tmp_path)
    encoder = HashingEncoder()
    result = train(
        data,
        encoder=encoder,
        registry=registry,
        max_text_chars=1000,
        review_precision=0.9,
        progress=False,
    )
    loaded = registry.load(expect_embedding_model=encoder.name, expect_dimension=256)
    classifier = loaded.classifier
    assert classifier.uses_text
    assert set(classifier.temperatures) == {"queue", "priority"}
    assert set(classifier.review_thresholds) == {"queue", "priority"}
    assert loaded.metadata.review_thresholds == classifier.review_thresholds
    assert loaded.metadata.review_precision == 0.9
    assert loaded.metadata.training_config == ModelConfig().name
    assert set(loaded.metadata.train_seconds) == {"embed", "fit"}
    for target in ("queue", "priority"):
        assert 0.0 < classifier.review_thresholds[target] <= 1.0 + 1e-9
        assert "ece" in result.metrics[target]
        assert set(result.metrics[target]["auto_route"]) == {"0.80", "0.90", "0.95"}

    # The worker's path: the pipeline hands the texts to the model's own TF-IDF.
    pipeline = LabelingPipeline(encoder, classifier, max_text_chars=1000)
    tickets = [Ticket.model_validate(t) for t in generate_tickets(5, seed=7)]
    batch = pipeline.run(tickets)
    assert batch.vectors.shape == (5, 256)  # still the encoder's vectors (ChromaDB)
    assert len(batch.predictions) == 5
    assert set(batch.timings) == {"embed", "classify"}
    assert pipeline.review_thresholds(0.6) == classifier.review_thresholds
    direct = classifier.predict(encoder.encode(batch.texts), batch.texts)
    assert [p["queue"] for p in direct] == [p["queue"] for p in batch.predictions]


def test_embedding_only_model_keeps_the_original_shape(sample_file: Path, tmp_path: Path) -> None:
    data = load_labeled(sample_file, targets=["queue"], progress=False)
    registry = ModelRegistry(tmp_path)
    train(
        data,
        encoder=HashingEncoder(),
        registry=registry,
        max_text_chars=1000,
        config=EMBEDDING_LR,
        review_precision=None,
        progress=False,
    )
    classifier = registry.load().classifier
    assert classifier.features is None and not classifier.uses_text
    assert classifier.review_thresholds == {}
    pipeline = LabelingPipeline(HashingEncoder(), classifier, max_text_chars=1000)
    assert pipeline.review_thresholds(0.6) == {"queue": 0.6}


@pytest.mark.unit
def test_training_writes_a_held_out_reference_for_the_monitor(tmp_path: Path) -> None:
    from ticketflow.monitoring.reference import load_reference

    path = write_tickets(generate_tickets(120, seed=3), tmp_path / "t.jsonl")
    data = load_labeled(path, targets=["queue"], progress=False)
    result = train(
        data,
        encoder=HashingEncoder(),
        registry=ModelRegistry(tmp_path / "models"),
        max_text_chars=1000,
        reference_dir=tmp_path / "reference",
        progress=False,
    )
    reference = load_reference(tmp_path / "reference", result.version)
    assert reference.model_version == result.version
    assert len(reference.sample) == 24  # the held-out 20 %, not the training rows
