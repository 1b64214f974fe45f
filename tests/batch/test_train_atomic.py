"""A trained version becomes current only after all its artifacts, the drift reference
included, are written: a failure on the way leaves the workers on the model they serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from ticketflow.batch.train import TrainRequest, train
from ticketflow.data.datasets import load_labeled
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.recipe import EMBEDDING_LR
from ticketflow.models.registry import ModelRegistry
from ticketflow.monitoring.reference import ReferenceSpec

pytestmark = pytest.mark.unit


def test_a_failed_reference_write_leaves_current_untouched(tmp_path: Path) -> None:
    data = load_labeled(
        write_tickets(generate_tickets(200), tmp_path / "t.jsonl"),
        targets=["queue"],
        progress=False,
    )
    registry = ModelRegistry(tmp_path / "registry")
    encoder = HashingEncoder()
    first = train(
        TrainRequest(data, max_text_chars=1000, config=EMBEDDING_LR),
        encoder=encoder,
        registry=registry,
        progress=False,
        reference=ReferenceSpec(tmp_path / "reference"),
    )
    assert registry.current_version() == first.version
    assert (tmp_path / "reference" / first.version).is_dir()

    # A read-only volume, a full disk...: here a file where the reference folder should be.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory")
    # Other tickets: a version id is the data's hash and the second it was trained in.
    other = load_labeled(
        write_tickets(generate_tickets(200, seed=5), tmp_path / "u.jsonl"),
        targets=["queue"],
        progress=False,
    )
    with pytest.raises(OSError):
        train(
            TrainRequest(other, max_text_chars=1000, config=EMBEDDING_LR, seed=7),
            encoder=encoder,
            registry=registry,
            progress=False,
            reference=ReferenceSpec(blocked),
        )
    assert registry.current_version() == first.version
    assert [entry.version for entry in registry.history()] == [first.version]
