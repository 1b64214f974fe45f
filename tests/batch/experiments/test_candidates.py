"""The candidates: the default model's block weights chosen by CV."""

import pytest

from tests.helpers import HashingEncoder
from ticketflow.batch import experiments
from ticketflow.devtools.sample import generate_tickets


@pytest.mark.unit
def test_block_weights_are_chosen_by_cv_and_folded_into_the_head() -> None:
    """The per-target block weights of the default model: chosen by out-of-fold macro-F1,
    and the stored head reads the shared unweighted matrix exactly as the weighted fit."""
    from dataclasses import replace

    import numpy as np
    import scipy.sparse as sp

    from ticketflow.models.features import HYBRID, TextFeatures
    from ticketflow.models.recipe import (
        BlockWeights,
        ModelConfig,
        block_scale,
        fit_head,
        weighted_head,
    )
    from ticketflow.models.text import build_texts
    from ticketflow.schemas import Ticket

    rows = generate_tickets(150, seed=4)
    texts = build_texts([Ticket.model_validate(r) for r in rows], max_chars=1000)
    vectors = HashingEncoder().encode(texts)
    y = [r["queue"] for r in rows]
    features = TextFeatures(HYBRID).fit(texts, vectors)
    matrix = features.transform(texts, vectors)
    grid = (BlockWeights(), BlockWeights(dense=0.5), BlockWeights(char=1.5))
    config = replace(ModelConfig(), cv_folds=3, block_grid=grid)

    head, oof = weighted_head(matrix, y, features=features, config=config, seed=1)
    assert head is not None and oof is not None and oof.fold_f1 is not None
    assert set(oof.fold_f1) == set(grid)
    means = {w: float(np.mean(f)) for w, f in oof.fold_f1.items()}
    assert oof.weights == max(grid, key=lambda w: (means[w], -grid.index(w)))

    scale = block_scale(features, oof.weights)
    assert scale.shape == (matrix.shape[1],)
    # the same fit (from the same fold head) on the weighted blocks, coefficients as fitted
    weighted = fit_head(
        matrix @ sp.diags(scale, format="csr"),
        np.asarray(y),
        config=config,
        seed=1,
        init=oof.init,
    )
    np.testing.assert_allclose(
        head.predict_proba(matrix),
        weighted.predict_proba(matrix @ sp.diags(scale, format="csr")),
        rtol=1e-5,
        atol=1e-6,
    )
    note = experiments.selection_note(oof.weights, oof.fold_f1)
    assert note.startswith(oof.weights.name) and "without the scored fold" in note

    # No grid, or a single block: the plain fixed-weight path, nothing chosen.
    _, plain = weighted_head(
        matrix, y, features=features, config=replace(config, block_grid=()), seed=1
    )
    assert plain is not None and plain.weights is None and plain.fold_f1 is None
