"""The CV fits of the recipe run in a pool of processes: same numbers as one by one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.helpers import HashingEncoder
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.features import HYBRID, TextFeatures
from ticketflow.models.recipe import (
    PARALLEL_CV_ROWS,
    ModelConfig,
    cv_jobs,
    out_of_fold_many,
)

pytestmark = pytest.mark.unit


def test_parallel_cv_gives_the_same_out_of_fold_predictions() -> None:
    tickets = generate_tickets(300, seed=2)
    texts = [f"{t['subject']} {t['body']}" for t in tickets]
    y = [t["queue"] for t in tickets]
    vectors = HashingEncoder(64).encode(texts)
    features = TextFeatures(HYBRID).fit(texts, vectors)
    matrix = features.transform(texts, vectors)
    halved = matrix.multiply(0.5).tocsr()
    config = replace(ModelConfig(), cv_folds=3)
    one = out_of_fold_many([matrix, halved], y, config=replace(config, cv_jobs=1), seed=1)
    pool = out_of_fold_many([matrix, halved], y, config=replace(config, cv_jobs=2), seed=1)
    for a, b in zip(one, pool, strict=True):
        assert a is not None and b is not None
        assert a.classes == b.classes
        np.testing.assert_array_equal(a.fold, b.fold)
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-10)
    # the two matrices really are different fits
    assert one[0] is not None and one[1] is not None
    assert not np.allclose(one[0].logits, one[1].logits)


def test_small_trainings_stay_in_process() -> None:
    config = ModelConfig()
    assert cv_jobs(config, rows=PARALLEL_CV_ROWS - 1, tasks=10) == 1
    assert cv_jobs(replace(config, cv_jobs=4), rows=10, tasks=3) == 3
    assert cv_jobs(config, rows=PARALLEL_CV_ROWS, tasks=10) >= 1
