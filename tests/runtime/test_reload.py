"""Hot reload (runtime.reload): verified models are handed over, broken ones are refused."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from tests.models.test_registry import save_model
from ticketflow.models.registry import METADATA_FILE, MODEL_FILE, ModelRegistry
from ticketflow.runtime.reload import ModelReloader, PreparedModel

pytestmark = pytest.mark.unit


def make(
    tmp_path: Path, on_ready: Callable[[PreparedModel], None] | None = None
) -> tuple[ModelRegistry, ModelReloader, list[str]]:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    results: list[str] = []
    reloader = ModelReloader(
        registry=registry,
        encoder=HashingEncoder(),
        serving_version="v1",
        on_result=results.append,
        poll_s=0,
        on_ready=on_ready,
    )
    return registry, reloader, results


def test_corrupt_or_mismatched_models_are_refused(tmp_path: Path) -> None:
    registry, reloader, results = make(tmp_path)
    with (registry.path("v2") / MODEL_FILE).open("ab") as handle:
        handle.write(b"corrupt")
    assert not reloader.prepare("v2", expected_sha256=None, source="announcement")
    assert reloader.pending is None and reloader.serving == "v1"

    shutil.copytree(registry.path("v1"), registry.path("v3"))
    path = registry.path("v3") / METADATA_FILE
    meta = json.loads(path.read_text())
    meta.update(version="v3", embedding_model="other/encoder")
    path.write_text(json.dumps(meta))
    assert not reloader.prepare("v3", expected_sha256=None, source="announcement")

    shutil.copytree(registry.path("v1"), registry.path("v4"))
    path = registry.path("v4") / METADATA_FILE
    meta = json.loads(path.read_text())
    meta.update(version="v4")
    path.write_text(json.dumps(meta))
    assert not reloader.prepare("v4", expected_sha256="0" * 64, source="announcement")
    assert reloader.pending is None and reloader.serving == "v1"
    assert results == ["refused", "refused", "refused"]


def test_registry_poll_picks_up_a_missed_promotion_but_not_a_refused_one(tmp_path: Path) -> None:
    registry, reloader, results = make(tmp_path)
    registry.promote("v2", by="test", reason="missed announcement")
    assert reloader.check_registry()
    assert reloader.pending is not None and reloader.pending.version == "v2"
    assert reloader.pending.source == "registry"
    assert not reloader.check_registry()  # already loaded: not loaded again
    assert results == ["ok"]


def test_with_on_ready_a_verified_model_is_handed_over_at_once(tmp_path: Path) -> None:
    handed: list[PreparedModel] = []
    registry, reloader, _ = make(tmp_path, on_ready=handed.append)
    registry.promote("v2", by="test", reason="serve follows the pointer")
    assert reloader.check_registry()
    assert [p.version for p in handed] == ["v2"]
    assert reloader.serving == "v2" and reloader.pending is None
