from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.monitoring.synthetic import make_sample
from ticketflow.monitoring.reference import ReferenceError, load_reference, write_reference

pytestmark = pytest.mark.unit


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    full = make_sample(500, seed=0)
    path = write_reference(
        tmp_path,
        model_version="v1",
        vectors=full.vectors,
        labels=full.labels,
        probabilities=full.probabilities,
        text_lengths=full.text_lengths,
        languages=full.languages,
        needs_review=full.needs_review,
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
    write_reference(
        tmp_path / "again",
        model_version="v1",
        vectors=full.vectors,
        labels=full.labels,
        probabilities=full.probabilities,
        text_lengths=full.text_lengths,
        languages=full.languages,
        needs_review=full.needs_review,
        sample_size=200,
        seed=1,
    )
    assert load_reference(tmp_path / "again", "v1").reference_version == reference.reference_version


def test_missing_reference_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReferenceError, match="ticketflow drift reference"):
        load_reference(tmp_path, "nope")
