"""Promotion history: append-only, rollback walks back through the champions."""

from pathlib import Path

import pytest

from tests.models.test_registry import save_model
from ticketflow.models.registry import HISTORY_FILE, ModelRegistry, ModelVerificationError

pytestmark = pytest.mark.unit


def test_promotions_are_appended_and_rollback_walks_back(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    save_model(registry, "v1")  # train + make current: recorded as action "train"
    save_model(registry, "v2", current=False)
    save_model(registry, "v3", current=False)
    assert registry.previous_champion() is None
    registry.promote("v2", by="alice", reason="better")
    registry.promote("v3", by="bob", reason="better still")
    assert registry.current_version() == "v3"
    assert registry.previous_champion() == "v2"
    registry.promote("v2", by="carol", reason="v3 misroutes refunds", action="rollback")
    assert registry.current_version() == "v2"
    assert registry.previous_champion() == "v1"
    history = registry.history()
    assert [(h.action, h.previous, h.version) for h in history] == [
        ("train", None, "v1"),
        ("promote", "v1", "v2"),
        ("promote", "v2", "v3"),
        ("rollback", "v3", "v2"),
    ]
    assert history[-1].by == "carol" and history[-1].reason == "v3 misroutes refunds"
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert len(lines) == 4  # one line per record, never rewritten


def test_promoting_a_corrupt_artifact_is_refused_and_not_recorded(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    with (tmp_path / "v2" / "model.joblib").open("ab") as handle:
        handle.write(b"corrupt")
    with pytest.raises(ModelVerificationError, match="sha256"):
        registry.promote("v2", by="alice", reason="x")
    assert registry.current_version() == "v1"
    assert len(registry.history()) == 1
