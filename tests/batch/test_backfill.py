"""Backfill: a historical file into the embedded vector store, as the worker stores tickets;
resumable, idempotent, human corrections kept, imported labels learnt from by retrain."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HashingEncoder, open_store
from ticketflow.adapters.store import ChromaVectorStore
from ticketflow.batch.backfill import (
    BackfillError,
    BackfillReport,
    BackfillRequest,
    backfill,
    read_rows,
)
from ticketflow.batch.retrain import RetrainPolicy, read_store, retrain, select
from ticketflow.batch.train import TrainRequest, train
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import LabelFeedback
from ticketflow.schemas import store as layout

pytestmark = pytest.mark.unit

FIELDS = ["subject", "body", "tags", "queue", "priority", "language"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabelingPipeline, str]:
    """A hybrid model for queue and priority trained on generated tickets, as a pipeline."""
    root = tmp_path_factory.mktemp("model")
    path = root / "train.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in generate_tickets(300, seed=1)) + "\n")
    registry = ModelRegistry(root / "registry")
    encoder = HashingEncoder()
    result = train(
        TrainRequest(
            load_labeled(path, targets=["queue", "priority"], progress=False), max_text_chars=1000
        ),
        encoder=encoder,
        registry=registry,
        progress=False,
    )
    loaded = registry.load(expect_embedding_model=encoder.name, expect_dimension=256)
    return LabelingPipeline(encoder, loaded.classifier, max_text_chars=1000), result.version


def history_csv(path: Path, n: int = 120, *, bad: bool = True) -> Path:
    """A help desk's export: no ticket_id column, tags as one string, some rows unusable."""
    rows: list[dict[str, Any]] = [
        {**{k: t.get(k) for k in FIELDS}, "tags": "|".join(t["tags"])}
        for t in generate_tickets(n, seed=9)
    ]
    if bad:
        rows[3] = {**rows[3], "subject": "", "body": ""}  # no text
        rows[7] = {**rows[7], "tags": "x" * 500}  # over the tag limit
        rows[10] = {**rows[10], "queue": ""}  # no label: stored with the model's only
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run(
    path: Path, store: ChromaVectorStore, model: tuple[LabelingPipeline, str], **kw: Any
) -> BackfillReport:
    pipeline, version = model
    return backfill(
        BackfillRequest(path, **kw),
        pipeline=pipeline,
        store=store,
        model_version=version,
        progress=False,
    )


def test_backfill_stores_the_worker_layout_with_imported_labels(
    tmp_path: Path, model: tuple[LabelingPipeline, str]
) -> None:
    path = history_csv(tmp_path / "history.csv")
    store = open_store(tmp_path, model[0])
    report = run(path, store, model, batch_size=32, document="redacted")

    # Line numbers as `ticketflow produce` reports them: the header is line 1.
    assert [line for line, _ in report.bad] == [5, 9]
    assert "subject and body are both empty" in report.bad[0][1]
    assert "tags" in report.bad[1][1]
    assert report.rows == 120 and report.written == 118 == store.count()
    assert report.with_labels == 118  # row 11 still has its priority
    assert report.tickets_per_s > 0

    records = store.records(["history-1", "history-11"], vectors=True, documents=True)
    first = records["history-1"].metadata
    assert first["model_version"] == model[1]
    assert layout.label_source(first) is layout.LabelSource.IMPORTED
    assert layout.imported_label(first, "queue") == first["queue"]
    assert layout.known_label(first, "queue") == first["queue"]
    predicted = layout.model_label(first, "queue")
    assert predicted is not None and predicted[0] == first["queue_predicted"]
    assert first[layout.IMPORT_SOURCE] == "history.csv"
    assert records["history-1"].document  # CHROMA_DOCUMENT=redacted keeps the model text
    vector = records["history-1"].vector
    assert vector is not None and vector.shape == (256,)
    # Without a queue in the file the model's queue is the current one; priority is imported.
    eleventh = records["history-11"].metadata
    assert layout.imported_label(eleventh, "queue") is None
    assert layout.imported_label(eleventh, "priority") is not None
    assert "queue_predicted" not in eleventh


def test_rerun_is_idempotent_and_resumes_after_a_crash(
    tmp_path: Path, model: tuple[LabelingPipeline, str]
) -> None:
    path = history_csv(tmp_path / "history.csv", bad=False)
    store = open_store(tmp_path, model[0])
    assert run(path, store, model).written == 120

    again = run(path, store, model)
    assert (again.written, again.unchanged) == (0, 120)

    # A crash after some batches: the records of the last ones never reached the store.
    store.collection.delete(ids=[f"history-{n}" for n in range(90, 121)])
    resumed = run(path, store, model, batch_size=16)
    assert (resumed.written, resumed.unchanged) == (31, 89)
    assert store.count() == 120

    forced = run(path, store, model, force=True)
    assert forced.written == 120 and store.count() == 120


class FailingWrites(ChromaVectorStore):
    """The real store whose third upsert fails, as a store that goes away mid-run."""

    def __init__(self, inner: ChromaVectorStore) -> None:
        self.collection = inner.collection
        self.upserts = 0

    def upsert(self, *args: Any, **kwargs: Any) -> None:
        self.upserts += 1
        if self.upserts == 3:
            raise ConnectionError("vector store went away")
        super().upsert(*args, **kwargs)


def test_a_failed_write_stops_the_run_and_a_rerun_completes_it(
    tmp_path: Path, model: tuple[LabelingPipeline, str]
) -> None:
    """Writes run beside the next batch's labelling: a failed one must still stop the run
    with its error, after the batches before it are stored, and a re-run writes the rest."""
    path = history_csv(tmp_path / "history.csv", bad=False)
    store = open_store(tmp_path, model[0])
    failing = FailingWrites(store)
    with pytest.raises(ConnectionError, match="went away"):
        run(path, failing, model, batch_size=16)
    assert failing.upserts == 3  # no write after the failed one
    assert store.count() == 32  # the two batches before it
    resumed = run(path, store, model, batch_size=16)
    assert (resumed.written, resumed.unchanged) == (88, 32)
    assert store.count() == 120


def test_a_persons_correction_is_never_overwritten(
    tmp_path: Path, model: tuple[LabelingPipeline, str]
) -> None:
    path = history_csv(tmp_path / "history.csv", n=20, bad=False)
    store = open_store(tmp_path, model[0])
    run(path, store, model)
    record = store.records(["history-2"])["history-2"].metadata
    fix = LabelFeedback(ticket_id="history-2", labels={"queue": "Escalations"}, corrected_by="ann")
    store.collection.update(ids=["history-2"], metadatas=[layout.correction_metadata(fix, record)])

    run(path, store, model, force=True)
    after = store.records(["history-2"])["history-2"].metadata
    assert after["queue"] == "Escalations" == layout.known_label(after, "queue")
    assert layout.label_source(after) is layout.LabelSource.HUMAN
    assert after["feedback_by"] == "ann"
    assert layout.imported_label(after, "queue") == record["imported_queue"]


def test_duplicate_ids_and_mapped_columns(
    tmp_path: Path, model: tuple[LabelingPipeline, str]
) -> None:
    rows = generate_tickets(6, seed=3)
    rows[4]["ticket_id"] = rows[1]["ticket_id"]  # the later row wins
    path = tmp_path / "export.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": r["ticket_id"], "text": r["body"], "team": r["queue"]}) for r in rows
        )
        + "\nnot json\n"
    )
    store = open_store(tmp_path, model[0])
    report = run(
        path,
        store,
        model,
        targets=["team"],
        mapping=ColumnMapping.parse(["ticket_id=id", "body=text"]),
    )
    assert report.duplicates == 1 and report.written == 5
    assert report.bad[0][0] == 7 and "invalid JSON" in report.bad[0][1]
    kept = store.records([rows[1]["ticket_id"]])[rows[1]["ticket_id"]].metadata
    # "team" is no target of the model: imported, but the queue stays the model's.
    assert layout.imported_label(kept, "team") == rows[4]["queue"]
    assert layout.label_source(kept) is layout.LabelSource.IMPORTED


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BackfillError, match="unknown suffix"):
        read_rows(tmp_path / "tickets.xlsx", targets=["queue"])


def test_retrain_learns_from_and_holds_out_imported_labels(
    tmp_path: Path, model: tuple[LabelingPipeline, str]
) -> None:
    path = history_csv(tmp_path / "history.csv", n=200, bad=False)
    store = open_store(tmp_path, model[0])
    run(path, store, model, document="redacted")
    stored = read_store(store.collection)
    policy = replace(RetrainPolicy(), use_predicted=False)
    selection = select(stored, ["queue"], policy, needs_text=True)
    assert selection.counts["held out (human)"] == len(selection.held_out["queue"]) > 0
    assert selection.counts["train (imported labels)"] == len(selection.train_rows)
    assert len(selection.train_rows) + len(selection.held_out["queue"]) == 200
    truth = {f"history-{n}": t["queue"] for n, t in enumerate(generate_tickets(200, seed=9), 1)}
    for row, label in selection.held_out["queue"]:
        assert truth[stored.ids[row]] == label


def test_imported_metadata_precedence() -> None:
    from ticketflow.schemas import LabeledTicket, LabelScore, SourcePosition, TargetPrediction

    def prediction(label: str) -> TargetPrediction:
        return TargetPrediction(
            label=label,
            probability=0.7,
            top=[LabelScore(label=label, probability=0.7)],
            needs_review=False,
            review_threshold=0.5,
        )

    labeled = LabeledTicket(
        ticket_id="a",
        predictions={"queue": prediction("Billing"), "priority": prediction("low")},
        needs_review=False,
        review_gate=["queue"],
        model_version="v2",
        embedding_model="m",
        event_time=None,
        processed_time=datetime.now(UTC),
        source=SourcePosition(topic="file:x.csv", partition=0, offset=2),
    )
    plain = layout.imported_metadata(labeled, {}, None, source="x.csv", imported_at=1.0)
    assert plain == layout.labeled_metadata(labeled)  # nothing imported: the worker's record

    first = layout.imported_metadata(
        labeled, {"queue": "Refunds"}, None, source="x.csv", imported_at=1.0
    )
    assert first["queue"] == "Refunds" and first["queue_predicted"] == "Billing"
    assert first["priority"] == "low" and "priority_predicted" not in first
    assert layout.model_label(first, "queue") == ("Billing", 0.7)

    # A later file without labels keeps the earlier import; a person's label wins over both.
    corrected = {**first, "human_priority": "high", "priority": "high", "label_source": "human"}
    again = layout.imported_metadata(labeled, {}, corrected, source="y.csv", imported_at=2.0)
    assert again["queue"] == "Refunds" and again[layout.IMPORT_SOURCE] == "x.csv"
    assert again["priority"] == "high" and again["priority_predicted"] == "low"
    assert layout.label_source(again) is layout.LabelSource.HUMAN
    assert layout.known_label(again, "priority") == "high"
    assert layout.known_label(again, "queue") == "Refunds"


def trained_with_store(
    tmp_path: Path,
) -> tuple[ModelRegistry, str, LabelingPipeline, ChromaVectorStore]:
    """A queue model trained on 200 generated tickets, and an empty store for its vectors."""
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in generate_tickets(200, seed=2)) + "\n")
    registry = ModelRegistry(tmp_path / "registry")
    encoder = HashingEncoder()
    version = train(
        TrainRequest(load_labeled(data, targets=["queue"], progress=False), max_text_chars=1000),
        encoder=encoder,
        registry=registry,
        progress=False,
    ).version
    pipeline = LabelingPipeline(encoder, registry.load().classifier, max_text_chars=1000)
    return registry, version, pipeline, open_store(tmp_path, pipeline)


def test_retrain_fits_a_challenger_on_a_backfilled_store(tmp_path: Path) -> None:
    """No feedback at all: the imported labels alone train and judge a challenger."""
    registry, version, pipeline, store = trained_with_store(tmp_path)
    path = history_csv(tmp_path / "history.csv", n=300, bad=False)
    backfill(
        BackfillRequest(path, document="redacted"),
        pipeline=pipeline,
        store=store,
        model_version=version,
        progress=False,
    )
    result = retrain(
        read_store(store.collection),
        registry=registry,
        policy=replace(RetrainPolicy(), use_predicted=False),
    )
    assert result.champion == version
    assert result.report["counts"]["train (imported labels)"] > 150
    assert result.report["metrics"]  # judged on the held-out imported labels
    # Its training rows are recorded, so live accuracy can leave them out.
    rows = registry.training_rows(result.challenger)
    trained = registry.metadata(result.challenger).n_train
    assert rows is not None and len(rows) == trained
    assert sum(rows.contains(f"history-{i}") for i in range(1, 301)) == trained


def test_out_of_the_box_backfill_then_answers_then_retrain(tmp_path: Path) -> None:
    """No setting changed (issue #29): the store keeps the redacted text, so the history a
    backfill wrote and the answers people gave to newly stored tickets train a challenger."""
    from ticketflow.cli.models import retrain_policy
    from ticketflow.config import Settings
    from ticketflow.stream.feedback import apply_feedback

    settings = Settings(_env_file=None)
    assert settings.chroma_document == "redacted"
    registry, version, pipeline, store = trained_with_store(tmp_path)
    run(history_csv(tmp_path / "history.csv", n=200, bad=False), store, (pipeline, version))
    # Tickets that arrive later: stored with the model's labels only, then answered.
    arriving = generate_tickets(120, seed=11)
    fresh = tmp_path / "arriving.jsonl"
    fresh.write_text(
        "\n".join(json.dumps({k: v for k, v in t.items() if k != "queue"}) for t in arriving)
    )
    run(fresh, store, (pipeline, version))
    stored = read_store(store.collection)
    assert len(stored.ids) == 320
    assert all(stored.documents), "the default store keeps every ticket's model text"
    answers = [
        LabelFeedback(ticket_id=t["ticket_id"], labels={"queue": t["queue"]}, corrected_by="a")
        for t in arriving
    ]
    outcome = apply_feedback(store.collection, answers)
    assert len(outcome.applied) == 120 and not outcome.unknown
    result = retrain(
        read_store(store.collection), registry=registry, policy=retrain_policy(settings)
    )
    counts = result.report["counts"]
    assert counts["train (human labels)"] > 0 and counts["train (imported labels)"] > 0
    assert result.report["metrics"], result.reasons
