"""Hot reload: verified models wait for a batch boundary, broken ones are refused."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from tests.models.test_registry import save_model
from tests.stream.test_worker import make_labeler
from ticketflow.models.registry import METADATA_FILE, MODEL_FILE, ModelRegistry
from ticketflow.stream.reload import ModelReloader, swap_if_ready
from ticketflow.stream.routing import Position
from ticketflow.stream.worker import RawEvent

pytestmark = pytest.mark.unit


def ticket(i: int) -> RawEvent:
    value = json.dumps({"ticket_id": f"t{i}", "body": "my invoice was charged twice"}).encode()
    return RawEvent(key=None, value=value, position=Position("tickets", 0, i))


def make(tmp_path: Path) -> tuple[ModelRegistry, ModelReloader]:
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    labeler_metrics = make_labeler(tmp_path)[4]
    reloader = ModelReloader(
        registry=registry,
        encoder=HashingEncoder(),
        serving_version="v1",
        metrics=labeler_metrics,
        poll_s=0,
    )
    return registry, reloader


def test_swap_happens_only_between_batches_and_changes_the_version(tmp_path: Path) -> None:
    labeler, labeled, _, _, metrics = make_labeler(tmp_path)
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    reloader = ModelReloader(
        registry=registry, encoder=HashingEncoder(), serving_version="v1", metrics=metrics
    )
    labeler.model_version = "v1"
    assert not swap_if_ready(labeler, reloader, metrics)
    asyncio.run(labeler.handle([ticket(0)]))
    assert reloader.prepare("v2", expected_sha256=None, source="announcement")
    assert labeler.model_version == "v1"  # nothing changes until the next batch boundary
    assert swap_if_ready(labeler, reloader, metrics)
    asyncio.run(labeler.handle([ticket(1)]))
    versions = [json.loads(v)["model_version"] for _, v in labeled.sent]
    assert versions == ["v1", "v2"]
    assert reloader.serving == "v2" and reloader.pending is None
    assert 'ticketflow_model_reloads_total{result="ok"} 1.0' in _text(metrics)


def test_corrupt_or_mismatched_models_are_refused(tmp_path: Path) -> None:
    registry, reloader = make(tmp_path)
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
    assert 'ticketflow_model_reloads_total{result="refused"} 3.0' in _text(reloader.metrics)


def test_registry_poll_picks_up_a_missed_promotion_but_not_a_refused_one(tmp_path: Path) -> None:
    registry, reloader = make(tmp_path)
    registry.promote("v2", by="test", reason="missed announcement")
    reloader.check_registry()
    assert reloader.pending is not None and reloader.pending.version == "v2"
    assert reloader.pending.source == "registry"


def _text(metrics) -> str:  # type: ignore[no-untyped-def]
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
