import copy
import pickle

import numpy as np
import pytest

from tests.helpers import HashingEncoder
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.cascade import (
    ALWAYS_ESCALATE,
    escalation_mask,
    escalation_threshold,
    predict_cascade,
)
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.features import HYBRID, FeatureConfig, TextFeatures
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import ModelConfig, add_first_stage, fit_model
from ticketflow.models.review import ReviewPolicy
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

pytestmark = pytest.mark.unit


def test_threshold_keeps_only_tickets_where_the_stages_agree_often_enough() -> None:
    rng = np.random.default_rng(0)
    n = 400
    second_pred = rng.integers(0, 3, n)
    second = np.full((n, 3), 0.05)
    second[np.arange(n), second_pred] = 0.9
    confidence = rng.uniform(0.34, 1.0, n)
    # The first stage gives the second stage's answer only when it is confident.
    first_pred = np.where(confidence > 0.7, second_pred, (second_pred + 1) % 3)
    first = np.full((n, 3), 0.0)
    first[np.arange(n), first_pred] = confidence
    first[np.arange(n), (first_pred + 1) % 3] = 1 - confidence
    cut, share = escalation_threshold(first, second, agreement=1.0)
    assert 0.7 < cut <= 0.75
    assert share == pytest.approx(float((confidence < cut).mean()))
    kept = confidence >= cut
    assert (first_pred[kept] == second_pred[kept]).all()
    # A looser agreement keeps more tickets (escalates fewer).
    _, looser = escalation_threshold(first, second, agreement=0.9)
    assert looser < share


def test_threshold_escalates_everything_when_the_stages_never_agree() -> None:
    y = np.array([0, 1] * 50)
    second = np.eye(2)[y] * 0.8 + 0.1
    first = np.eye(2)[1 - y] * 0.8 + 0.1
    cut, share = escalation_threshold(first, second, agreement=0.9)
    assert share == 1.0
    assert cut == ALWAYS_ESCALATE


def _cascade_model() -> tuple[TicketClassifier, list[str], HashingEncoder, HashingEncoder]:
    rows = generate_tickets(300, seed=3)
    texts = build_texts([Ticket.model_validate(r) for r in rows], max_chars=1000)
    dense, static = HashingEncoder(256, "test/dense"), HashingEncoder(64, "test/static")
    labels = {"queue": [str(r["queue"]) for r in rows]}
    second = TicketClassifier.fit(dense.encode(texts), labels, texts=texts, features=HYBRID)
    first = TicketClassifier.fit(static.encode(texts), labels, texts=texts, features=HYBRID)
    second.first_stage = first
    return second, texts, dense, static


def test_pipeline_runs_the_transformer_only_on_escalated_rows() -> None:
    model, _, dense, static = _cascade_model()
    tickets = [Ticket.model_validate(r) for r in generate_tickets(40, seed=9)]
    first = model.first_stage
    assert first is not None
    texts = build_texts(tickets, max_chars=1000)
    probe = first.predict(static.encode(texts), texts)
    confidences = sorted(p["queue"].probability for p in probe)
    model.escalation_thresholds = {"queue": confidences[10]}  # 10 rows below the cut

    calls: list[int] = []

    class Spy(HashingEncoder):
        def encode(self, texts, *, show_progress=False):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return super().encode(texts)

    pipeline = LabelingPipeline(
        Spy(256, "test/dense"), model, max_text_chars=1000, static_encoder=static
    )
    result = pipeline.run(tickets)
    assert calls == [10]
    assert result.counts["escalated"] == 10
    assert result.vectors.shape == (40, 64)  # the static space, for every row
    assert pipeline.vector_model == "test/static"
    # Escalated rows carry the transformer stage's prediction, the others the first stage's.
    expected = predict_cascade(
        first,
        model,
        model.escalation_thresholds,
        texts=result.texts,
        static_vectors=static.encode(result.texts),
        dense_vectors=lambda rows: dense.encode([result.texts[i] for i in rows]),
    )
    assert [p["queue"] for p in result.predictions] == [p["queue"] for p in expected.predictions]


def test_a_cascade_model_refuses_to_run_without_its_static_encoder() -> None:
    model, _, dense, _ = _cascade_model()
    with pytest.raises(ValueError, match="static encoder"):
        LabelingPipeline(dense, model, max_text_chars=1000)


def _shared_cascade() -> tuple[TicketClassifier, list[str], HashingEncoder, HashingEncoder]:
    """A cascade trained as ``ticketflow train`` trains it: one TF-IDF for both stages."""
    rows = generate_tickets(300, seed=3)
    texts = build_texts([Ticket.model_validate(r) for r in rows], max_chars=1000)
    dense, static = HashingEncoder(256, "test/dense"), HashingEncoder(64, "test/static")
    labels = {"queue": [str(r["queue"]) for r in rows]}
    config = ModelConfig(features=HYBRID, cv_folds=3, block_grid=())
    second, held_out = fit_model(texts, dense.encode(texts), labels, config=config)
    add_first_stage(
        second, held_out, texts, static.encode(texts), labels, config=config, agreement=0.9, seed=42
    )
    return second, texts, dense, static


def test_trained_stages_share_one_tfidf_and_the_artifact_keeps_it_shared() -> None:
    model, _, _, _ = _shared_cascade()
    first = model.first_stage
    assert first is not None and first.features is not None and model.features is not None
    assert first.features.shares_text_blocks(model.features)
    assert first.features.dimension == 64 and model.features.dimension == 256
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.first_stage.features.shares_text_blocks(loaded.features)


def test_shared_tfidf_is_built_once_per_batch_and_predicts_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _, dense, static = _shared_cascade()
    first = model.first_stage
    assert first is not None
    tickets = [Ticket.model_validate(r) for r in generate_tickets(60, seed=11)]
    texts = build_texts(tickets, max_chars=1000)
    confidences = sorted(p["queue"].probability for p in first.predict(static.encode(texts), texts))
    model.escalation_thresholds = {"queue": confidences[25]}
    # The reference: the same stages with their own (equal, but not shared) vectorizers.
    unshared = copy.deepcopy(model)
    assert unshared.first_stage is not None and unshared.first_stage.features is not None
    unshared.first_stage.features = copy.deepcopy(unshared.first_stage.features)
    assert unshared.features is not None
    assert not unshared.first_stage.features.shares_text_blocks(unshared.features)

    def run(cascade: TicketClassifier) -> tuple[list[object], int]:
        calls: list[int] = []
        original = TextFeatures.text_blocks

        def counting(self: TextFeatures, batch: list[str]) -> object:
            calls.append(len(batch))
            return original(self, batch)

        monkeypatch.setattr(TextFeatures, "text_blocks", counting)
        assert cascade.first_stage is not None
        outcome = predict_cascade(
            cascade.first_stage,
            cascade,
            cascade.escalation_thresholds,
            texts=texts,
            static_vectors=static.encode(texts),
            dense_vectors=lambda rows: dense.encode([texts[i] for i in rows]),
        )
        monkeypatch.setattr(TextFeatures, "text_blocks", original)
        assert int(outcome.escalated.sum()) == 25
        return [p["queue"] for p in outcome.predictions], sum(calls)

    shared_predictions, shared_rows = run(model)
    own_predictions, own_rows = run(unshared)
    assert shared_rows == 60  # every ticket's TF-IDF once
    assert own_rows == 60 + 25  # escalated tickets twice
    assert shared_predictions == own_predictions


def test_text_blocks_of_another_feature_set_must_match_its_blocks() -> None:
    texts = ["printer broken", "vpn down"] * 30
    vectors = np.zeros((60, 4), dtype=np.float32)
    word_only = TextFeatures(FeatureConfig(char=False)).fit(texts, vectors)
    with pytest.raises(ValueError, match="cannot share"):
        TextFeatures(HYBRID).fit(texts, vectors, text_blocks=word_only)


@pytest.mark.parametrize("gate", [[], ["priority"]])
def test_only_the_gate_target_escalates_when_asked(gate: list[str]) -> None:
    rows = generate_tickets(300, seed=3)
    texts = build_texts([Ticket.model_validate(r) for r in rows], max_chars=1000)
    dense, static = HashingEncoder(256, "test/dense"), HashingEncoder(64, "test/static")
    labels = {t: [str(r[t]) for r in rows] for t in ("queue", "priority")}
    config = ModelConfig(features=HYBRID, cv_folds=3, block_grid=())
    fitted = {}
    for escalate in ("all", "gate"):
        second, held_out = fit_model(
            texts,
            dense.encode(texts),
            labels,
            config=config,
            review=ReviewPolicy(gate=tuple(gate)),
        )
        share = add_first_stage(
            second,
            held_out,
            texts,
            static.encode(texts),
            labels,
            config=config,
            agreement=0.99,
            seed=42,
            escalate=escalate,
        )
        fitted[escalate] = (second.escalation_thresholds, share)
    every, gated = fitted["all"], fitted["gate"]
    gate_target = gate[0] if gate else "queue"
    other = next(t for t in labels if t != gate_target)
    # The gate keeps the cut it gets when every target escalates; the other never escalates.
    assert gated[0][gate_target] == every[0][gate_target]
    assert gated[0][other] == 0.0 < every[0][other]
    assert gated[1] <= every[1]
    static_vectors = static.encode(texts)
    first = second.first_stage
    assert first is not None
    predictions = first.predict(static_vectors, texts)
    assert escalation_mask(predictions, gated[0]).tolist() == [
        p[gate_target].probability < gated[0][gate_target] for p in predictions
    ]
