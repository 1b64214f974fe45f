"""``ticketflow models list``: versions with the current one marked, and the history."""

import json
from pathlib import Path

import pytest

from tests.models.test_registry import save_model
from ticketflow.cli import main
from ticketflow.models.registry import ModelRegistry

pytestmark = pytest.mark.unit


def test_models_list_marks_current_and_shows_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    registry.promote("v2", by="alice", reason="retrain promoted: gain +0.05")
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line[2:].split()[0]: line for line in out.splitlines() if line[2:3] == "v"}
    assert lines["v2"].startswith("*") and lines["v1"].startswith(" ")
    assert "promote  v1 -> v2 by alice: retrain promoted: gain +0.05" in out
    assert "train    None -> v1" in out


def test_rollback_without_a_previous_champion_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    assert main(["models", "rollback"]) == 1
    assert "no previous champion" in capsys.readouterr().err


def test_models_list_json_marks_the_current_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["version"], m["current"]) for m in listed] == [("v1", True), ("v2", False)]
    assert listed[0]["targets"] == ["queue"] and "lineage" in listed[0]


def test_models_list_names_the_test_macro_f1_per_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "test macro-F1 per target" in out and "train macro-F1" not in out
    assert "queue –" in out  # this model's metrics have no macro-F1


def test_models_list_shows_the_classes_people_introduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import HashingEncoder
    from ticketflow.models.classifier import TicketClassifier
    from ticketflow.models.registry import ModelMetadata

    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    encoder = HashingEncoder()
    vectors = encoder.encode(["refund", "printer", "card", "vpn", "new office", "desk move"])
    labels = ["Billing", "IT", "Billing", "IT", "Facilities", "Facilities"]
    classifier = TicketClassifier.fit(vectors, {"queue": labels})
    metadata = registry.metadata("v1").model_copy(
        update={"version": "v2", "labels": {"queue": classifier.labels("queue")}}
    )
    metadata = ModelMetadata.model_validate(
        {**metadata.model_dump(), "new_labels": {"queue": ["Facilities"]}}
    )
    registry.save(classifier, metadata, make_current=False)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "new queue: Facilities" in out
    assert out.count("new queue:") == 1  # v1 learned nothing new
