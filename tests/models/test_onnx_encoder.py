"""How the ONNX encoder groups texts into runs (the runs themselves: test_encoders.py)."""

import numpy as np
import pytest

from ticketflow.models.onnx_encoder import token_buckets

pytestmark = pytest.mark.unit


def test_every_row_is_in_exactly_one_run_of_at_most_batch_size() -> None:
    lengths = np.random.default_rng(0).integers(1, 129, size=203)
    runs = token_buckets(lengths, batch_size=32, width=16)
    rows = np.concatenate(runs)
    assert sorted(rows.tolist()) == list(range(203))
    assert max(len(r) for r in runs) <= 32


def test_a_run_holds_one_band_of_token_counts() -> None:
    lengths = np.asarray([128, 20, 128, 17, 128, 40, 33, 128])
    runs = token_buckets(lengths, batch_size=32, width=16)
    assert [sorted(lengths[r].tolist()) for r in runs] == [[17, 20], [33, 40], [128] * 4]
    # The long texts no longer pad the short ones to 128 tokens.
    padded = sum(len(r) * int(lengths[r].max()) for r in runs)
    assert padded == 2 * 20 + 2 * 40 + 4 * 128


def test_width_zero_is_runs_of_batch_size_in_length_order() -> None:
    lengths = np.asarray([5, 1, 4, 2, 3])
    runs = token_buckets(lengths, batch_size=2, width=0)
    assert [lengths[r].tolist() for r in runs] == [[1, 2], [3, 4], [5]]
