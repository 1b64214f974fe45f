import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.registry import (
    ModelMetadata,
    ModelRegistry,
    ModelVerificationError,
    RegistryError,
)

pytestmark = pytest.mark.unit


def save_model(registry: ModelRegistry, version: str, *, current: bool = True) -> None:
    encoder = HashingEncoder()
    vectors = encoder.encode(["refund invoice", "printer broken", "card charged", "vpn down"])
    classifier = TicketClassifier.fit(vectors, {"queue": ["Billing", "IT", "Billing", "IT"]})
    metadata = ModelMetadata(
        version=version,
        created_at=datetime.now(UTC),
        targets=["queue"],
        labels={"queue": classifier.labels("queue")},
        embedding_model=encoder.name,
        embedding_dimension=encoder.dimension,
        max_text_chars=1000,
    )
    registry.save(classifier, metadata, metrics={"queue": {"accuracy": 1.0}}, make_current=current)


def test_save_load_and_current_pointer(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.current_version() is None
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    assert registry.versions() == ["v1", "v2"]
    assert registry.current_version() == "v1"
    loaded = registry.load(expect_embedding_model="test/hashing", expect_dimension=256)
    assert loaded.metadata.version == "v1"
    assert len(loaded.metadata.model_sha256) == 64
    assert loaded.metadata.metrics == {"queue": {"accuracy": 1.0}}
    registry.set_current("v2")
    assert registry.load().metadata.version == "v2"


def test_no_model_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="train one first"):
        ModelRegistry(tmp_path).load()
    with pytest.raises(RegistryError, match="no model version"):
        ModelRegistry(tmp_path).set_current("v9")


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    save_model(registry, "v1")
    with (tmp_path / "v1" / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelVerificationError, match="sha256"):
        registry.load()


def test_encoder_mismatch_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    save_model(registry, "v1")
    with pytest.raises(ModelVerificationError, match="trained on embeddings"):
        registry.load(expect_embedding_model="sentence-transformers/other")
    with pytest.raises(ModelVerificationError, match="384-d"):
        registry.load(expect_dimension=384)


def test_versions_are_never_overwritten(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    save_model(registry, "v1")
    with pytest.raises(RegistryError, match="already exists"):
        save_model(registry, "v1")


def test_metadata_without_lineage_still_loads(tmp_path: Path) -> None:
    # metadata.json of a model trained before lineage (and its baseline) were recorded
    registry = ModelRegistry(tmp_path)
    save_model(registry, "v1")
    path = tmp_path / "v1" / "metadata.json"
    stored = json.loads(path.read_text())
    stored.pop("lineage", None)
    path.write_text(json.dumps(stored))
    assert registry.metadata("v1").lineage is None
