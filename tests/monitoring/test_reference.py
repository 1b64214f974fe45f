from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.monitoring.synthetic import make_sample
from ticketflow.monitoring.reference import (
    COLUMNS_FILE,
    ReferenceError,
    load_reference,
    write_sample_reference,
)

pytestmark = pytest.mark.unit


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    full = make_sample(500, seed=0)
    path = write_sample_reference(
        tmp_path,
        model_version="v1",
        sample=full,
        sample_size=200,
        seed=1,
    )
    assert path == tmp_path / "v1"
    reference = load_reference(tmp_path, "v1")
    assert len(reference.sample) == 200
    assert reference.meta["rows_available"] == 500
    assert reference.reference_version.startswith("v1@")
    assert reference.sample.vectors.dtype == np.float32
    assert reference.sample.needs_review is not None
    assert set(reference.sample.labels) == {"queue", "priority"}
    # Same inputs, same seed -> same reference version (content hash).
    write_sample_reference(
        tmp_path / "again",
        model_version="v1",
        sample=full,
        sample_size=200,
        seed=1,
    )
    assert load_reference(tmp_path / "again", "v1").reference_version == reference.reference_version


def test_missing_reference_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReferenceError, match="ticketflow drift reference"):
        load_reference(tmp_path, "nope")


def test_per_target_review_flags_round_trip_and_older_references_load(tmp_path: Path) -> None:
    full = make_sample(300, seed=0)
    flags = {t: [p < 0.6 for p in v] for t, v in full.probabilities.items()}
    write_sample_reference(
        tmp_path,
        model_version="v1",
        sample=replace(full, needs_review=flags["queue"], needs_review_by_target=flags),
        sample_size=100,
        seed=1,
    )
    sample = load_reference(tmp_path, "v1").sample
    assert set(sample.needs_review_by_target) == {"queue", "priority"}
    for target, column in sample.needs_review_by_target.items():
        assert column == [p < 0.6 for p in sample.probabilities[target]]
    assert sample.needs_review == sample.needs_review_by_target["queue"]
    # A reference written before per-target review: no flags, still loads.
    columns = json.loads((tmp_path / "v1" / COLUMNS_FILE).read_text())
    del columns["needs_review_by_target"]
    (tmp_path / "v1" / COLUMNS_FILE).write_text(json.dumps(columns))
    assert load_reference(tmp_path, "v1").sample.needs_review_by_target == {}
