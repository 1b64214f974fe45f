"""The recipe's CV at scale: fits in a pool of processes (same numbers as one by one), and
out-of-fold predictions from a stratified sample of the training rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from tests.helpers import HashingEncoder
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.features import HYBRID, TextFeatures
from ticketflow.models.recipe import (
    PARALLEL_CV_ROWS,
    ModelConfig,
    add_first_stage,
    cv_jobs,
    cv_sample,
    fit_head,
    fit_model,
    judged_rows,
    out_of_fold_confidence,
    out_of_fold_many,
    out_of_fold_rows,
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


def test_cv_sample_keeps_class_shares_and_every_class_in_every_fold() -> None:
    first = ["a"] * 600 + ["b"] * 300 + ["c"] * 97 + ["d"] * 3
    second = ["x"] * 996 + ["rare"] * 4  # rare rows all outside the first's small classes
    labels = {"first": first, "second": second}
    assert cv_sample(labels, max_rows=1_000, folds=5, seed=1) is None
    assert cv_sample(labels, max_rows=None, folds=5, seed=1) is None
    rows = cv_sample(labels, max_rows=200, folds=5, seed=1)
    assert rows is not None
    assert np.all(np.diff(rows) > 0)  # unique, in training order
    picked = Counter(first[i] for i in rows)
    assert picked["a"] == 120 and picked["b"] == 60 and picked["c"] == 19
    assert picked["d"] == 3  # fewer than the folds: all of them
    assert Counter(second[i] for i in rows)["rare"] == 4
    again = cv_sample(labels, max_rows=200, folds=5, seed=1)
    assert again is not None and np.array_equal(rows, again)


def _sample_data(n: int) -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    tickets = generate_tickets(n, seed=4)
    texts = [f"{t['subject']} {t['body']}" for t in tickets]
    labels = {
        "queue": [str(t["queue"]) for t in tickets],
        "priority": [str(t["priority"]) for t in tickets],
    }
    return texts, HashingEncoder(64).encode(texts), labels


def test_a_sampled_cv_calibrates_on_its_rows_and_the_final_heads_fit_every_row() -> None:
    texts, vectors, labels = _sample_data(400)
    full = ModelConfig(block_grid=(), cv_max_rows=None)
    sampled = replace(full, cv_max_rows=150)
    model, held_out = fit_model(texts, vectors, labels, config=sampled)
    reference, reference_held_out = fit_model(texts, vectors, labels, config=full)
    rows = held_out["queue"].rows
    assert rows is not None and 140 <= len(rows) <= 160
    for target in labels:
        oof = held_out[target]
        assert oof.rows is rows and oof.logits.shape[0] == len(rows)  # one sample, all targets
        assert reference_held_out[target].rows is None
        assert len(np.unique(oof.fold)) == 3  # SAMPLED_CV_FOLDS
        assert len(np.unique(reference_held_out[target].fold)) == 5  # cv_folds
        assert reference_held_out[target].logits.shape[0] == len(texts)
        # the final head is fitted on all 400 rows, whatever the CV's rows (each solver
        # starts from its own first fold's head, so they agree to the solver's tolerance)
        np.testing.assert_allclose(
            model.heads[target].coef_, reference.heads[target].coef_, atol=0.05
        )
        matrix = model.features.transform(texts, vectors)  # type: ignore[union-attr]
        agree = model.heads[target].predict(matrix) == reference.heads[target].predict(matrix)
        assert agree.mean() >= 0.99
        assert target in model.temperatures and target in model.review_thresholds
    confidence = out_of_fold_confidence(model, held_out, labels)
    assert all(len(p) == len(rows) for p, _ in confidence.values())
    assert out_of_fold_rows(held_out, len(texts)) == len(rows)
    assert out_of_fold_rows(reference_held_out, len(texts)) == len(texts)
    assert out_of_fold_rows({}, len(texts)) == 0


def test_the_cascade_stages_are_calibrated_on_the_same_sampled_rows() -> None:
    texts, vectors, labels = _sample_data(400)
    config = ModelConfig(cv_folds=3, cv_max_rows=150)
    model, held_out = fit_model(texts, vectors, labels, config=config)
    static = HashingEncoder(32, "test/static").encode(texts)
    share = add_first_stage(
        model, held_out, texts, static, labels, config=config, agreement=0.9, seed=42
    )
    assert 0.0 <= share <= 1.0
    assert set(model.escalation_thresholds) == set(labels)
    held_out["queue"].rows = held_out["queue"].rows[:-1]  # type: ignore[index]
    with pytest.raises(ValueError, match="different rows"):
        add_first_stage(
            model, held_out, texts, static, labels, config=config, agreement=0.9, seed=42
        )


def test_a_head_started_from_a_fold_head_reaches_the_same_optimum_sooner() -> None:
    texts, vectors, labels = _sample_data(400)
    features = TextFeatures(HYBRID).fit(texts, vectors)
    matrix = features.transform(texts, vectors)
    y = np.asarray(labels["queue"])
    config = ModelConfig()
    fold = fit_head(matrix[:300], y[:300], config=config, seed=1)
    cold = fit_head(matrix, y, config=config, seed=1)
    warm = fit_head(matrix, y, config=config, seed=1, init=(fold.coef_, fold.intercept_))
    assert warm.n_iter_[0] < cold.n_iter_[0]
    assert (warm.predict(matrix) == cold.predict(matrix)).mean() >= 0.99
    np.testing.assert_allclose(warm.coef_, cold.coef_, atol=0.05)
    assert not warm.warm_start  # the stored head refits from scratch if anyone refits it
    # a head of other columns is no starting point: ignored, not an error
    other = fit_head(matrix, y, config=config, seed=1, init=(fold.coef_[:, :5], fold.intercept_))
    assert other.n_iter_[0] == cold.n_iter_[0]


def test_a_class_of_one_row_leaves_the_target_calibrated_by_the_others() -> None:
    """Issue #30 item 4: one 1-row class used to switch calibration and the review cut off
    for its whole target; now the CV holds out the other classes and the rare one is named."""
    from ticketflow.models.recipe import cv_folds, too_small_to_calibrate

    tickets = generate_tickets(200, seed=5)
    texts = [f"{t['subject']} {t['body']}" for t in tickets]
    y = [t["queue"] for t in tickets]
    y[7] = "Lonely queue"
    vectors = HashingEncoder(64).encode(texts)
    assert cv_folds(y, 5) == 5
    assert cv_folds(["a", "b", "b"], 5) == 1  # only one class could be held out
    assert too_small_to_calibrate({"queue": y, "type": ["x", "y"] * 100}) == {
        "queue": ["Lonely queue"]
    }
    classifier, held_out = fit_model(
        texts, vectors, {"queue": y}, config=replace(ModelConfig(), cv_folds=3), seed=1
    )
    assert "queue" in held_out
    assert np.isfinite(classifier.temperatures["queue"]) and classifier.temperatures["queue"] > 0
    assert "queue" in classifier.review_thresholds
    assert "Lonely queue" in classifier.labels("queue")  # still a class the model knows


def test_review_cuts_are_chosen_on_the_rows_people_labelled() -> None:
    """A retrain learns from the model's own confident labels too; out of fold a head agrees
    with those easily, so a cut chosen on them promises people a precision they do not get
    (issue #29: 95% auto-routed at precision 0.84 after a promotion)."""
    texts, vectors, labels = _sample_data(600)
    rng = np.random.default_rng(3)
    people = list(labels["queue"][:300])
    classes = sorted(set(people))
    for i in rng.choice(300, size=90, replace=False):  # people's labels are noisy
        people[i] = classes[(classes.index(people[i]) + 1) % len(classes)]
    config = replace(ModelConfig(), block_grid=())
    first, _ = fit_model(texts[:300], vectors[:300], {"queue": people}, config=config)
    own = [p["queue"].label for p in first.predict(vectors[300:], texts[300:])]
    mixed = {"queue": people + own}
    judged = np.arange(600) < 300
    by_people, held_out = fit_model(texts, vectors, mixed, config=config, judged=judged)
    by_all, _ = fit_model(texts, vectors, mixed, config=config)
    assert judged_rows(held_out["queue"], judged, "queue").sum() == 300
    assert by_people.review_thresholds["queue"] > by_all.review_thresholds["queue"]
    # Too few people-labelled rows to choose on: every row is used, as without a mask.
    few = np.arange(600) < 50
    assert judged_rows(held_out["queue"], few, "queue").all()
    assert judged_rows(held_out["queue"], None, "queue").all()
