"""Retraining from the vector store: no encoder, champion vs challenger, readable decisions."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import HashingEncoder
from ticketflow.adapters.store import ChromaVectorStore, open_chroma_client
from ticketflow.batch.retrain import (
    HELD_OUT,
    KNOWN_TO_BOTH,
    RetrainError,
    RetrainPolicy,
    RetrainRequest,
    decide,
    read_store,
    retrain,
    set_gains,
)
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.recipe import EMBEDDING_LR, ModelConfig, fit_model
from ticketflow.models.redaction import redact
from ticketflow.models.registry import ModelMetadata, ModelRegistry
from ticketflow.models.text import build_texts
from ticketflow.monitoring.reference import ReferenceSpec, load_reference
from ticketflow.schemas import LabelFeedback, Ticket
from ticketflow.stream.feedback import apply_feedback

pytestmark = pytest.mark.unit

CONFIG = replace(ModelConfig(), cv_folds=3)
RENAMED = "Billing and Payments"


def open_store(tmp_path: Path, encoder: HashingEncoder) -> ChromaVectorStore:
    """The embedded vector store of a test world, declared for ``encoder``'s space."""
    return ChromaVectorStore(
        open_chroma_client(host=None, port=0, path=tmp_path / "chroma"),
        "tickets",
        embedding_model=encoder.name,
        dimension=encoder.dimension,
    )


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """A champion trained on generated tickets, and a store the 'worker' filled with them."""
    encoder = HashingEncoder()
    rows = generate_tickets(600, seed=5)
    tickets = [Ticket.model_validate(r) for r in rows]
    texts = build_texts(tickets, max_chars=1000)
    vectors = encoder.encode(texts)
    labels = {"queue": [r["queue"] for r in rows]}
    champion, _ = fit_model(
        texts[:200], vectors[:200], {t: v[:200] for t, v in labels.items()}, config=CONFIG
    )
    registry = ModelRegistry(tmp_path / "registry")
    registry.save(
        champion,
        ModelMetadata(
            version="v-champion",
            created_at=datetime.now(UTC),
            targets=["queue"],
            labels={t: champion.labels(t) for t in labels},
            embedding_model=encoder.name,
            embedding_dimension=encoder.dimension,
            max_text_chars=1000,
        ),
    )
    store = open_store(tmp_path, encoder)
    predictions = champion.predict(vectors, texts)
    store.upsert(
        [r["ticket_id"] for r in rows],
        vectors,
        [
            {
                "label_source": "model",
                "model_version": "v-champion",
                **{t: p[t].label for t in p},
                **{f"{t}_probability": p[t].probability for t in p},
            }
            for p in predictions
        ],
        [redact(t) for t in texts],
    )
    return {"rows": rows, "registry": registry, "store": store, "vectors": vectors, "texts": texts}


def relabel(world: dict[str, Any]) -> None:
    """Agents rename one queue consistently and confirm the true queue of the other tickets."""
    feedback = [
        LabelFeedback(
            ticket_id=r["ticket_id"],
            labels={"queue": "Payments" if r["queue"] == RENAMED else r["queue"]},
            corrected_by="agent",
        )
        for r in world["rows"]
    ]
    outcome = apply_feedback(world["store"].collection, feedback)
    assert len(outcome.applied) == len(feedback) and not outcome.unknown


@pytest.fixture
def no_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retraining must not embed anything: any encoder use fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder was called during retrain")

    import ticketflow.models.embedding

    monkeypatch.setattr(ticketflow.models.embedding.SentenceTransformerEncoder, "__init__", refuse)
    monkeypatch.setattr(ticketflow.models.embedding.SentenceTransformerEncoder, "encode", refuse)
    monkeypatch.setattr(HashingEncoder, "encode", refuse)


def test_relabelled_class_is_learned_and_promoted_without_the_encoder(
    world: dict[str, Any], no_encoder: None, tmp_path: Path
) -> None:
    relabel(world)
    stored = read_store(world["store"].collection)
    assert len(stored.ids) == 600 and stored.embedding_model == "test/hashing"
    result = retrain(
        stored,
        RetrainRequest(config=CONFIG),
        registry=world["registry"],
        policy=RetrainPolicy(),
        report_dir=tmp_path / "reports",
        reference=ReferenceSpec(tmp_path / "reference"),
    )
    assert result.promote and result.decision == "promoted", result.reasons
    # The challenger can become current, so the monitor needs its reference: written now.
    reference = load_reference(tmp_path / "reference", result.challenger)
    assert len(reference.sample) >= 50
    assert set(reference.sample.labels) == {"queue"}
    assert "Payments" in set(reference.sample.labels["queue"])
    assert result.json_path is not None and result.json_path.is_file()
    assert result.markdown_path is not None and "promoted" in result.markdown_path.read_text()
    new = result.report["metrics"][HELD_OUT]["challenger"]["queue"]
    old = result.report["metrics"][HELD_OUT]["champion"]["queue"]
    assert new["per_class"]["Payments"]["f1-score"] > 0.5
    assert old["per_class"]["Payments"]["f1-score"] == 0.0
    challenger = world["registry"].load(result.challenger)
    assert "Payments" in challenger.classifier.labels("queue")
    assert RENAMED not in challenger.classifier.labels("queue")
    # its own CV rows, not the champion's copied metadata
    assert challenger.metadata.n_out_of_fold == challenger.metadata.n_train > 0
    assert world["registry"].current_version() == "v-champion"  # promotion is the caller's


def test_a_worse_challenger_is_rejected_with_a_readable_reason(
    world: dict[str, Any], no_encoder: None
) -> None:
    relabel(world)
    stored = read_store(world["store"].collection)
    good = retrain(
        stored, RetrainRequest(config=CONFIG), registry=world["registry"], policy=RetrainPolicy()
    )
    world["registry"].promote(good.challenger, by="test", reason="better")
    worse = retrain(
        stored,
        RetrainRequest(config=replace(EMBEDDING_LR, c=1e-3)),  # no TF-IDF and heavily regularised
        registry=world["registry"],
        # every class judged, whatever its few held-out tickets: the veto's reason is tested
        policy=RetrainPolicy(min_class_support=0),
    )
    assert not worse.promote and worse.decision == "rejected"
    text = " ".join(worse.reasons)
    assert "macro-F1" in text and "< margin" in text
    assert "F1 drops" in text


def test_missing_documents_name_the_setting(world: dict[str, Any], tmp_path: Path) -> None:
    collection = world["store"].collection
    stored = read_store(collection)
    stored.documents = [None] * len(stored.ids)
    with pytest.raises(RetrainError, match="CHROMA_DOCUMENT=redacted"):
        retrain(
            stored,
            RetrainRequest(config=CONFIG),
            registry=world["registry"],
            policy=RetrainPolicy(),
        )


def test_predicted_labels_below_the_threshold_or_disabled_are_not_used(
    world: dict[str, Any],
) -> None:
    from ticketflow.batch.retrain import select

    stored = read_store(world["store"].collection)
    probabilities = np.asarray([m["queue_probability"] for m in stored.metadatas])
    everything = select(stored, ["queue"], RetrainPolicy(min_probability=0.0), needs_text=True)
    confident = select(stored, ["queue"], RetrainPolicy(min_probability=0.9), needs_text=True)
    never = select(stored, ["queue"], RetrainPolicy(use_predicted=False), needs_text=True)
    assert len(everything.train_rows) == 600
    assert len(confident.train_rows) == int((probabilities >= 0.9).sum())
    assert never.train_rows == []


def test_decide_needs_a_gain_in_enough_bootstrap_resamples() -> None:
    def metrics(f1: float) -> dict[str, Any]:
        return {"s": {"queue": {"macro_f1": f1, "n": 50, "per_class": {}}}}

    old, new = metrics(0.80), metrics(0.85)
    kwargs: dict[str, Any] = {"margin": 0.01, "tolerance": 0.05, "min_n": 20, "confidence": 0.9}
    sure = {"s": np.array([0.05] * 95 + [-0.01] * 5)}
    unsure = {"s": np.array([0.05] * 80 + [-0.01] * 20)}
    assert decide(old, new, gains=sure, **kwargs)[0]
    ok, reasons = decide(old, new, gains=unsure, **kwargs)
    expected = "above 0 in 80% of 100 bootstrap resamples (< confidence 90%)"
    assert not ok and any(expected in r for r in reasons)
    # 0 turns the check off (the share is still reported); a set that need only not regress
    # is not held to it.
    ok, reasons = decide(old, new, gains=unsure, **{**kwargs, "confidence": 0.0})
    assert ok and any(
        "above 0 in 80% of 100 bootstrap resamples (not required)" in r for r in reasons
    )
    assert decide(old, new, gains=unsure, no_regression={"s"}, **kwargs)[0]


def test_a_loss_on_the_audited_tickets_vetoes_only_when_the_resamples_are_sure_of_it() -> None:
    from ticketflow.batch.retrain import AUDIT

    def metrics(held: float, audit: float) -> dict[str, Any]:
        return {
            name: {"queue": {"macro_f1": f1, "n": 50, "per_class": {}}}
            for name, f1 in [(HELD_OUT, held), (AUDIT, audit)]
        }

    old, new = metrics(0.70, 0.90), metrics(0.75, 0.87)
    kwargs: dict[str, Any] = {"margin": 0.01, "tolerance": 0.05, "min_n": 20}
    held = np.array([0.05] * 100)
    sure = {HELD_OUT: held, AUDIT: np.array([-0.03] * 95 + [0.01] * 5)}
    unsure = {HELD_OUT: held, AUDIT: np.array([-0.03] * 60 + [0.01] * 40)}
    ok, reasons = decide(old, new, no_regression={AUDIT}, gains=sure, **kwargs)
    assert not ok and any(
        "worse in 95% of 100 bootstrap resamples (≥ 90%: a veto)" in r for r in reasons
    )
    ok, reasons = decide(old, new, no_regression={AUDIT}, gains=unsure, **kwargs)
    assert ok and any(
        "worse in 60% of 100 bootstrap resamples (< 90%: no veto)" in r for r in reasons
    )
    # Without resamples the loss vetoes, as for any set that must not regress.
    assert not decide(old, new, no_regression={AUDIT}, **kwargs)[0]


def test_set_gains_are_the_mean_over_targets_of_paired_resamples() -> None:
    labelled = {"queue": [(0, "a"), (1, "b"), (2, "a"), (3, "b")], "priority": [(0, "x")]}
    before = {"queue": ["a", "a", "a", "b"], "priority": ["x"]}
    same = set_gains(labelled, before, before, seed=1)
    assert same.shape == (2_000,) and not same.any()
    better = set_gains(labelled, before, {"queue": ["a", "b", "a", "b"], "priority": ["x"]}, seed=1)
    assert (better >= 0).all() and better.mean() > 0


def test_decide_margin_and_tolerance() -> None:
    def metrics(f1: float, per_class: dict[str, float]) -> dict[str, Any]:
        return {
            "s": {
                "queue": {
                    "macro_f1": f1,
                    "n": 50,
                    "per_class": {k: {"f1-score": v, "support": 10} for k, v in per_class.items()},
                }
            }
        }

    old = metrics(0.80, {"a": 0.8, "b": 0.8})
    ok, _ = decide(old, metrics(0.85, {"a": 0.9, "b": 0.8}), margin=0.01, tolerance=0.05, min_n=20)
    assert ok
    ok, reasons = decide(
        old, metrics(0.85, {"a": 1.0, "b": 0.7}), margin=0.01, tolerance=0.05, min_n=20
    )
    assert not ok and any("'b' F1 drops 0.800 -> 0.700" in r for r in reasons)
    ok, reasons = decide(
        old, metrics(0.805, {"a": 0.81, "b": 0.8}), margin=0.01, tolerance=0.05, min_n=20
    )
    assert not ok and "gain +0.005 < margin 0.010" in reasons[0]
    ok, reasons = decide(old, metrics(0.9, {"a": 0.9}), margin=0.01, tolerance=0.05, min_n=60)
    assert not ok and "only 50 labelled tickets" in reasons[0]
    # Ten tickets of 'b': a drop there is one ticket's noise once 20 are needed to judge it.
    ok, reasons = decide(
        old,
        metrics(0.85, {"a": 1.0, "b": 0.7}),
        margin=0.01,
        tolerance=0.05,
        min_n=20,
        min_support=20,
    )
    assert ok and any("fewer than 20 tickets not judged alone: 'a', 'b'" in r for r in reasons)


def test_evaluation_file_is_scored_and_never_trained_on(
    world: dict[str, Any], no_encoder: None, tmp_path: Path
) -> None:
    from ticketflow.batch.retrain import EVAL_FILE, load_eval_labels

    relabel(world)
    path = tmp_path / "gold.jsonl"
    gold = world["rows"][-80:]
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "ticket_id": r["ticket_id"],
                    "queue": "Payments" if r["queue"] == RENAMED else r["queue"],
                }
            )
            for r in gold
        )
    )
    eval_labels = load_eval_labels(path, ["queue"])
    assert len(eval_labels) == 80
    result = retrain(
        read_store(world["store"].collection),
        RetrainRequest(config=CONFIG, eval_labels=eval_labels),
        registry=world["registry"],
        policy=RetrainPolicy(),
    )
    assert result.report["counts"]["excluded (evaluation file)"] == 80
    assert result.report["metrics"][EVAL_FILE]["challenger"]["queue"]["n"] == 80
    assert any(reason.startswith(EVAL_FILE) for reason in result.reasons)
    with pytest.raises(RetrainError, match="not in the store"):
        retrain(
            read_store(world["store"].collection),
            RetrainRequest(config=CONFIG, eval_labels={"NOPE": {"queue": "x"}}),
            registry=world["registry"],
            policy=RetrainPolicy(),
        )


def test_the_retrain_command_never_loads_an_encoder_library(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """`ticketflow retrain` end to end in a fresh process: no torch, ONNX or model2vec."""
    import os
    import subprocess
    import sys

    relabel(world)
    probe = (
        "import sys, ticketflow.cli\n"
        "rc = ticketflow.cli.main(['retrain', '--no-promote'])\n"
        "heavy = ('torch', 'sentence_transformers', 'onnxruntime', 'model2vec')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules], rc)\n"
    )
    env = {
        **os.environ,
        "MODEL_REGISTRY_DIR": str(tmp_path / "registry"),
        "CHROMA_PATH": str(tmp_path / "chroma"),
        "RETRAIN_REPORT_DIR": str(tmp_path / "reports"),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "LOADED [] 0" in done.stdout, done.stdout + done.stderr
    assert "promoted" in done.stdout and "not promoted: --no-promote" in done.stdout


@pytest.fixture
def cascade_world(tmp_path: Path) -> dict[str, Any]:
    """A cascade champion whose worker stored the first stage's (static) vectors."""
    dense, static = HashingEncoder(256, "test/dense"), HashingEncoder(64, "test/static")
    rows = generate_tickets(600, seed=6)
    texts = build_texts([Ticket.model_validate(r) for r in rows], max_chars=1000)
    dense_vectors, static_vectors = dense.encode(texts), static.encode(texts)
    labels = {"queue": [r["queue"] for r in rows[:200]]}
    champion, _ = fit_model(texts[:200], dense_vectors[:200], labels, config=CONFIG)
    first, _ = fit_model(texts[:200], static_vectors[:200], labels, config=CONFIG, review=None)
    champion.first_stage = first
    champion.escalation_thresholds = {"queue": 0.5}
    registry = ModelRegistry(tmp_path / "registry")
    registry.save(
        champion,
        ModelMetadata(
            version="v-cascade",
            created_at=datetime.now(UTC),
            targets=["queue"],
            labels={"queue": champion.labels("queue")},
            embedding_model=dense.name,
            embedding_dimension=dense.dimension,
            static_model=static.name,
            escalation_thresholds=champion.escalation_thresholds,
            max_text_chars=1000,
        ),
    )
    store = open_store(tmp_path, static)
    store.upsert(
        [r["ticket_id"] for r in rows],
        static_vectors,
        [{"label_source": "model", "queue": "IT Support", "queue_probability": 0.5}] * 600,
        [redact(t) for t in texts],
    )
    return {"rows": rows, "registry": registry, "store": store}


def test_a_cascade_retrains_its_first_stage_from_the_stored_static_vectors(
    cascade_world: dict[str, Any], no_encoder: None
) -> None:
    feedback = [
        LabelFeedback(ticket_id=r["ticket_id"], labels={"queue": r["queue"]}, corrected_by="a")
        for r in cascade_world["rows"]
    ]
    apply_feedback(cascade_world["store"].collection, feedback)
    stored = read_store(cascade_world["store"].collection)
    registry = cascade_world["registry"]
    result = retrain(
        stored, RetrainRequest(config=CONFIG), registry=registry, policy=RetrainPolicy()
    )
    champion = registry.load("v-cascade").classifier
    challenger = registry.load(result.challenger).classifier
    assert challenger.first_stage is not None and champion.first_stage is not None
    # The transformer stage and the thresholds are the champion's; the first stage is new.
    np.testing.assert_array_equal(challenger.heads["queue"].coef_, champion.heads["queue"].coef_)
    assert challenger.escalation_thresholds == champion.escalation_thresholds
    # Refitted on the ~420 stored tickets with human labels (the champion's saw 200).
    assert (
        challenger.first_stage.features.n_features  # type: ignore[union-attr]
        > champion.first_stage.features.n_features  # type: ignore[union-attr]
    )
    # Both first stages are scored on the held-out human labels, and the decision says why.
    scores = result.report["metrics"][HELD_OUT]
    assert {"champion", "challenger"} <= set(scores)
    assert scores["challenger"]["queue"]["n"] == scores["champion"]["queue"]["n"] > 0
    assert result.reasons


def test_a_cascade_refuses_a_class_its_transformer_stage_does_not_know(
    cascade_world: dict[str, Any], no_encoder: None
) -> None:
    feedback = [
        LabelFeedback(
            ticket_id=r["ticket_id"],
            labels={"queue": "Payments" if r["queue"] == RENAMED else r["queue"]},
            corrected_by="a",
        )
        for r in cascade_world["rows"]
    ]
    apply_feedback(cascade_world["store"].collection, feedback)
    stored = read_store(cascade_world["store"].collection)
    with pytest.raises(RetrainError, match="does not know"):
        retrain(
            stored,
            RetrainRequest(config=CONFIG),
            registry=cascade_world["registry"],
            policy=RetrainPolicy(),
        )


def test_a_read_that_fails_mid_way_starts_over(world: dict[str, Any]) -> None:
    collection = world["store"].collection

    class RacingWriter:
        """The real collection, whose second page fails once, as it does while a worker
        process writes to the same embedded store."""

        metadata = collection.metadata

        def __init__(self) -> None:
            self.failed = False

        def get(self, **kwargs: Any) -> Any:
            if kwargs["offset"] > 0 and not self.failed:
                self.failed = True
                raise RuntimeError("Error executing plan: Internal error: Error finding id")
            return collection.get(**kwargs)

    racing = RacingWriter()
    stored = read_store(racing, page_size=250, retry_delay_s=0.01)
    assert racing.failed
    assert len(stored.ids) == len(set(stored.ids)) == 600
    assert stored.vectors.shape[0] == 600
    with pytest.raises(RuntimeError, match="Error finding id"):
        read_store(RacingWriter(), page_size=250, attempts=1)


def test_a_permanent_store_error_fails_at_once(world: dict[str, Any]) -> None:
    import chromadb.errors

    calls = []

    class Missing:
        metadata = None

        def get(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            raise chromadb.errors.NotFoundError("Collection [tickets] does not exist")

    with pytest.raises(chromadb.errors.NotFoundError, match="does not exist"):
        read_store(Missing(), page_size=250, attempts=5, retry_delay_s=0)
    assert len(calls) == 1  # not retried: the same answer would come back every time


def rename_feedback(rows: list[dict[str, Any]], *, keep: int | None = None) -> list[LabelFeedback]:
    """Agents answer every ticket; RENAMED tickets get a queue the champion never had
    (only the first ``keep`` of them when set: the others get no answer)."""
    feedback, renamed = [], 0
    for r in rows:
        label = r["queue"]
        if label == RENAMED:
            renamed += 1
            if keep is not None and renamed > keep:
                continue
            label = "Payments"
        feedback.append(
            LabelFeedback(ticket_id=r["ticket_id"], labels={"queue": label}, corrected_by="a")
        )
    return feedback


def test_a_cascade_learns_a_new_class_in_both_stages_from_the_re_embedded_text(
    cascade_world: dict[str, Any], tmp_path: Path
) -> None:
    apply_feedback(cascade_world["store"].collection, rename_feedback(cascade_world["rows"]))
    stored = read_store(cascade_world["store"].collection)
    registry = cascade_world["registry"]
    result = retrain(
        stored,
        RetrainRequest(config=CONFIG),
        registry=registry,
        policy=RetrainPolicy(),
        dense_encoder=HashingEncoder(256, "test/dense"),
        report_dir=tmp_path / "reports",
        reference=ReferenceSpec(tmp_path / "reference"),
    )
    # The drift reference holds what the worker's monitor records hold: the stored (static,
    # 64-d) vectors, labelled by the first stage that reads them; the transformer stage reads
    # 256-d vectors and would refuse them (the bug `ticketflow retrain` hit out of the box).
    reference = load_reference(tmp_path / "reference", result.challenger)
    assert reference.sample.vectors.shape[1] == 64
    assert "Payments" in set(reference.sample.labels["queue"])
    challenger = registry.load(result.challenger)
    first = challenger.classifier.first_stage
    assert first is not None and "Payments" in first.labels("queue")
    assert "Payments" in challenger.classifier.labels("queue")  # the transformer stage too
    assert challenger.metadata.new_labels == {"queue": ["Payments"]}
    assert challenger.metadata.train_seconds["embed"] > 0
    # Compared on the champion's classes too, and the new class's F1 is reported.
    metrics = result.report["metrics"]
    assert HELD_OUT + KNOWN_TO_BOTH in metrics
    known = metrics[HELD_OUT + KNOWN_TO_BOTH]["challenger"]["queue"]["per_class"]
    assert "Payments" not in {k for k, v in known.items() if v["support"] > 0}
    payments = metrics[HELD_OUT]["challenger"]["queue"]["per_class"]["Payments"]
    assert payments["support"] > 0 and payments["f1-score"] > 0.5
    assert metrics[HELD_OUT]["champion"]["queue"]["per_class"]["Payments"]["f1-score"] == 0
    assert any(r.startswith("new class queue='Payments' learned") for r in result.reasons)
    assert result.promote, result.reasons
    assert result.markdown_path is not None
    assert "Payments" in result.markdown_path.read_text(encoding="utf-8")


def test_a_cascade_refitted_from_the_re_embedded_text_gets_a_reference_from_its_first_stage(
    cascade_world: dict[str, Any], tmp_path: Path
) -> None:
    """The reference is labelled from the stored (static) vectors, as the worker's monitor
    records carry them: by the first stage. The retrain Job always writes one
    (DRIFT_REFERENCE_DIR), and gave the stored vectors to the transformer stage instead
    ("X has 64 features, but ... expecting 256"): `ticketflow retrain` failed on every
    cascade champion once it refitted both stages."""
    apply_feedback(cascade_world["store"].collection, rename_feedback(cascade_world["rows"]))
    result = retrain(
        read_store(cascade_world["store"].collection),
        RetrainRequest(config=CONFIG),
        registry=cascade_world["registry"],
        policy=RetrainPolicy(),
        dense_encoder=HashingEncoder(256, "test/dense"),
        reference=ReferenceSpec(tmp_path / "reference"),
    )
    reference = load_reference(tmp_path / "reference", result.challenger)
    assert len(reference.sample) >= 50
    assert "Payments" in set(reference.sample.labels["queue"])


def test_a_new_class_with_too_few_answers_is_left_out_loudly(
    cascade_world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    feedback = rename_feedback(cascade_world["rows"], keep=4)
    apply_feedback(cascade_world["store"].collection, feedback)
    with caplog.at_level("WARNING"):
        result = retrain(
            read_store(cascade_world["store"].collection),
            RetrainRequest(config=CONFIG),
            registry=cascade_world["registry"],
            policy=RetrainPolicy(use_predicted=False, min_new_class_examples=5),
            dense_encoder=HashingEncoder(256, "test/dense"),
        )
    challenger = cascade_world["registry"].load(result.challenger)
    assert "Payments" not in challenger.classifier.labels("queue")
    assert challenger.metadata.new_labels == {}
    assert result.report["new_classes"] == {"queue": {"answers": {"Payments": 4}, "learned": []}}
    assert any("NOT learned: 4 labels" in r for r in result.reasons)
    assert "RETRAIN_MIN_NEW_CLASS_EXAMPLES=5" in caplog.text
    assert result.report["counts"]["new class below the minimum"] > 0


def test_a_mismatched_transformer_encoder_is_refused(cascade_world: dict[str, Any]) -> None:
    with pytest.raises(RetrainError, match="does not match the champion"):
        retrain(
            read_store(cascade_world["store"].collection),
            RetrainRequest(config=CONFIG),
            registry=cascade_world["registry"],
            policy=RetrainPolicy(),
            dense_encoder=HashingEncoder(128, "test/other"),
        )


def test_decide_needs_no_gain_on_the_classes_the_champion_knows() -> None:
    def scores(macro: float) -> dict[str, Any]:
        return {"queue": {"macro_f1": macro, "n": 50, "per_class": {}}}

    champion = {"all": scores(0.70), "known": scores(0.80)}
    challenger = {"all": scores(0.85), "known": scores(0.80)}
    kwargs: dict[str, Any] = {"margin": 0.01, "tolerance": 0.05, "min_n": 20}
    assert not decide(champion, challenger, **kwargs)[0]
    assert decide(champion, challenger, no_regression={"known"}, **kwargs)[0]
    worse = {"all": scores(0.85), "known": scores(0.75)}
    assert not decide(champion, worse, no_regression={"known"}, **kwargs)[0]


def test_the_rows_the_champion_was_fit_on_are_trained_on_but_never_held_out() -> None:
    # A backfilled history ticketflow train learned from: judged on it, the champion would
    # win on tickets it memorised.
    from ticketflow.batch.retrain import StoredTickets, select

    ids = [f"t{i}" for i in range(40)]
    metadatas: list[dict[str, Any]] = [
        {"label_source": "imported", "imported_queue": "A" if i % 2 else "B", "queue": "A"}
        for i in range(40)
    ]
    stored = StoredTickets(ids, np.zeros((40, 2), np.float32), metadatas, ["text"] * 40)
    seen = list(range(30))
    selection = select(stored, ["queue"], RetrainPolicy(), needs_text=True, seen=seen)
    held = {row for row, _ in selection.held_out["queue"]}
    assert held and held.isdisjoint(seen)
    assert set(seen) <= set(selection.train_rows)
    every = select(stored, ["queue"], RetrainPolicy(), needs_text=True)
    assert {row for row, _ in every.held_out["queue"]} & set(seen)


def test_answers_to_audited_tickets_are_held_out_apart_and_never_trained_on() -> None:
    # The audited tickets are the one sample of what the champion was sure of: judged on,
    # all of them; the other answers are split as before.
    from ticketflow.batch.retrain import StoredTickets, select

    metadatas: list[dict[str, Any]] = [
        {"label_source": "human", "human_queue": "A" if i % 2 else "B", "queue": "A"}
        for i in range(40)
    ]
    for i in range(30, 40):
        metadatas[i]["review_audit"] = True
    metadatas.append(
        {"label_source": "model", "queue": "A", "queue_probability": 0.99, "review_audit": True}
    )
    ids = [f"t{i}" for i in range(41)]
    stored = StoredTickets(ids, np.zeros((41, 2), np.float32), metadatas, ["text"] * 41)
    selection = select(stored, ["queue"], RetrainPolicy(), needs_text=True)
    assert [row for row, _ in selection.audit["queue"]] == list(range(30, 40))
    assert [label for _, label in selection.audit["queue"]] == ["B", "A"] * 5
    held = {row for row, _ in selection.held_out["queue"]}
    assert held and held <= set(range(30))
    assert set(selection.train_rows).isdisjoint(range(30, 40))
    assert 40 in selection.train_rows  # not answered yet: the model's confident label
    assert selection.counts["held out (audited)"] == 10


def test_confident_labels_of_a_model_that_never_knew_a_learned_new_class_are_not_trained_on() -> (
    None
):
    # The champion could not tell a ticket of the class people introduced: its confident
    # labels put such tickets in another class. Those near an answer of the new class are
    # left out; a model that knew the class, and tickets near other answers, are trusted.
    from ticketflow.batch.retrain import StoredTickets, select

    people = [
        {"label_source": "human", "human_queue": "New" if i % 2 else "A", "queue": "A"}
        for i in range(30)
    ]
    near_new, near_a = [1.0, 0.1], [0.1, 1.0]
    vectors = [near_new if i % 2 else near_a for i in range(30)]
    by_model = []
    for version, vector in [
        *[("old", near_new)] * 5,
        *[("old", near_a)] * 3,
        *[("knows-new", near_new)] * 4,
        *[("deleted", near_new)] * 2,
    ]:
        by_model.append({"queue": "A", "queue_probability": 0.99, "model_version": version})
        vectors.append(vector)
    metadatas: list[dict[str, Any]] = [*people, *by_model]
    ids = [f"t{i}" for i in range(len(metadatas))]
    stored = StoredTickets(ids, np.asarray(vectors, np.float32), metadatas, ["x"] * len(ids))
    classes_of = {"old": {"queue": ["A", "B"]}, "knows-new": {"queue": ["A", "B", "New"]}}
    kwargs: dict[str, Any] = {"needs_text": True, "known": {"queue": ["A", "B"]}}
    selection = select(stored, ["queue"], RetrainPolicy(), classes_of=lambda: classes_of, **kwargs)
    by_model_rows = {row for row in selection.train_rows if row >= len(people)}
    assert by_model_rows == set(range(35, 44))  # near "A", "knows-new", the deleted version
    assert selection.counts["model label near an answer of a class that model never knew"] == 5
    # While the new class is below the minimum nothing learns it: every label is used.
    rare = select(
        stored,
        ["queue"],
        RetrainPolicy(min_new_class_examples=100),
        classes_of=lambda: classes_of,
        **kwargs,
    )
    assert {row for row in rare.train_rows if row >= len(people)} == set(range(30, 44))
    # After a promoted model learned the class, the champion knows it: the first model's
    # labels near its answers are still left out (they stay in the store).
    promoted = select(
        stored,
        ["queue"],
        RetrainPolicy(),
        classes_of=lambda: classes_of,
        needs_text=True,
        known={"queue": ["A", "B", "New"]},
    )
    assert {row for row in promoted.train_rows if row >= len(people)} == set(range(35, 44))
    assert promoted.counts["model label near an answer of a class that model never knew"] == 5
