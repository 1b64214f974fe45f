"""Hot reload: verified models wait for a batch boundary, broken ones are refused."""

import asyncio
import json
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from tests.models.test_registry import save_model
from tests.stream.test_worker import make_labeler
from ticketflow.models.registry import ModelRegistry
from ticketflow.runtime.reload import ModelReloader
from ticketflow.stream.reload import counted, swap_if_ready
from ticketflow.stream.routing import Position
from ticketflow.stream.worker import RawEvent

pytestmark = pytest.mark.unit


def ticket(i: int) -> RawEvent:
    value = json.dumps({"ticket_id": f"t{i}", "body": "my invoice was charged twice"}).encode()
    return RawEvent(key=None, value=value, position=Position("tickets", 0, i))


def test_swap_happens_only_between_batches_and_changes_the_version(tmp_path: Path) -> None:
    labeler, labeled, _, _, metrics = make_labeler(tmp_path)
    registry = ModelRegistry(tmp_path / "registry")
    save_model(registry, "v1")
    save_model(registry, "v2", current=False)
    reloader = ModelReloader(
        registry=registry,
        encoder=HashingEncoder(),
        serving_version="v1",
        on_result=counted(metrics),
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


def _text(metrics) -> str:  # type: ignore[no-untyped-def]
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
