"""The performance report: stored model labels paired with known ones, the pages built from
them and the command (no browser: see test_browser)."""

from pathlib import Path

import numpy as np
import pytest

from ticketflow.batch.reports import performance
from ticketflow.batch.reports.page import render_html
from ticketflow.schemas import store as layout

pytestmark = pytest.mark.unit


def _metadata(
    queue: str,
    probability: float = 0.8,
    *,
    human: str | None = None,
    imported: str | None = None,
    processed_at: float = 1_000.0,
    version: str = "v1",
) -> dict[str, object]:
    """A record as the worker writes it, then corrected or imported as feedback/backfill do."""
    metadata: dict[str, object] = {
        "model_version": version,
        "label_source": "model",
        "processed_at": processed_at,
        "queue": queue,
        "queue_probability": probability,
    }
    if imported is not None:
        metadata |= {
            "queue_predicted": queue,
            "queue": imported,
            "imported_queue": imported,
            "label_source": "imported",
            layout.IMPORT_SOURCE: "file.csv",
        }
    if human is not None:
        metadata.setdefault("queue_predicted", queue)
        metadata |= {"queue": human, "human_queue": human, "label_source": "human"}
    return metadata


def test_scored_labels_pair_known_and_model_labels_and_respect_since() -> None:
    records = [
        _metadata("a", human="b"),  # corrected: the model said a
        _metadata("a", imported="a", processed_at=2_000.0),
        _metadata("c"),  # the model's label alone: not scored
        _metadata("b", human="b", imported="a", version="v2"),  # a person's label wins
    ]
    assert performance.store_targets(records) == ["queue"]
    scored = performance.scored_labels(records, ["queue"])["queue"]
    assert scored.truth == ["b", "a", "b"]
    assert scored.predicted == ["a", "a", "b"]
    assert scored.source == ["human", "imported", "human"]
    assert scored.model_version == ["v1", "v1", "v2"]
    recent = performance.scored_labels(records, ["queue"], since=1_500.0)["queue"]
    assert recent.truth == ["a"]

    summary = performance.performance_summary(scored)
    assert summary["all"]["n"] == 3 and summary["all"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["by_source"]["human"]["accuracy"] == pytest.approx(0.5)
    assert summary["by_source"]["imported"]["accuracy"] == 1.0
    assert summary["by_version"]["v2"]["n"] == 1


def test_performance_report_says_when_there_are_too_few_labels(tmp_path: Path) -> None:
    scored = performance.scored_labels([_metadata("a", human="b")], ["queue"])
    page = performance.build_performance_report(
        scored, tmp_path, source="test", since=None, min_labels=5, records=1
    )
    assert page.summary["too_few"] == ["queue"]
    text = render_html(page)
    assert "Too few labelled tickets for queue: 1 (at least 5" in text
    assert not list(tmp_path.glob("evidently-*.html"))  # no Evidently report of one ticket
    empty = performance.build_performance_report(
        {}, tmp_path, source="test", since=None, min_labels=5, records=0
    )
    assert "No labelled tickets" in render_html(empty)


def test_performance_report_writes_evidently_per_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = []
    for i in range(60):
        truth = ["a", "b", "c"][i % 3]
        said = truth if rng.random() < 0.7 else "a"
        records.append(_metadata(said, imported=truth))
    scored = performance.scored_labels(records, ["queue"])
    page = performance.build_performance_report(
        scored, tmp_path, source="test", since=None, min_labels=20, records=60
    )
    evidently = tmp_path / "evidently-queue.html"
    assert evidently.is_file() and evidently.stat().st_size > 100_000
    assert page.summary["too_few"] == []
    text = render_html(page)
    assert 'iframe src="evidently-queue.html"' in text


def test_cli_report_performance_says_when_there_is_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticketflow.cli import main

    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    assert main(["report", "performance", "--out", str(tmp_path / "out")]) == 1
    assert "no collection 'tickets'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["report", "performance", "--since", "soon", "--out", str(tmp_path)]) == 2


def test_training_rows_are_left_out_of_live_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #30: train on a file, backfill the same file, report: the imported labels of the
    training rows must not count as unseen. Live accuracy is then the test part's."""
    import json

    from tests.helpers import HashingEncoder, open_store
    from ticketflow.batch.backfill import BackfillRequest, backfill
    from ticketflow.batch.train import TrainRequest, train
    from ticketflow.cli import main
    from ticketflow.data.datasets import load_labeled
    from ticketflow.devtools.sample import generate_tickets
    from ticketflow.models.pipeline import LabelingPipeline
    from ticketflow.models.registry import ModelRegistry

    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in generate_tickets(500, seed=3)) + "\n")
    registry = ModelRegistry(tmp_path / "registry")
    encoder = HashingEncoder()
    result = train(
        TrainRequest(
            load_labeled(path, targets=["queue"], progress=False),
            max_text_chars=1000,
            test_size=0.3,
        ),
        encoder=encoder,
        registry=registry,
        progress=False,
    )
    rows = registry.training_rows(result.version)
    assert rows is not None and len(rows) == 350
    assert (result.path / "training-rows.npz").stat().st_size < 350 * 8 * 2 + 1_000
    loaded = registry.load()
    pipeline = LabelingPipeline(encoder, loaded.classifier, max_text_chars=1000)
    store = open_store(tmp_path, pipeline)
    backfill(
        BackfillRequest(path, document="full"),
        pipeline=pipeline,
        store=store,
        model_version=result.version,
        progress=False,
    )
    records = [record for page in store.pages(documents=True) for record in page]
    metadatas = [record.metadata for record in records]
    unseen = result.metrics["queue"]["accuracy"]  # the test part, scored at training time

    naive = performance.performance_summary(
        performance.scored_labels(metadatas, ["queue"])["queue"]
    )
    assert naive["all"]["n"] == 500
    assert naive["all"]["accuracy"] > unseen + 0.05  # the flattering number of the issue

    by_id = performance.scored_labels(
        metadatas,
        ["queue"],
        ids=[record.ticket_id for record in records],
        training=registry.training_rows,
    )["queue"]
    # The ids alone, and the model text alone (a file re-exported with other ids), both find them.
    by_text = performance.scored_labels(
        metadatas,
        ["queue"],
        documents=[record.document for record in records],
        training=registry.training_rows,
    )["queue"]
    for scored in (by_id, by_text):
        summary = performance.performance_summary(scored)
        assert summary["all"]["n"] == 150 and summary["training_rows"]["n"] == 350
        assert summary["unchecked"] == 0
        assert abs(summary["all"]["accuracy"] - unseen) <= 0.03
        assert summary["training_rows"]["accuracy"] > summary["all"]["accuracy"]

    page = performance.build_performance_report(
        {"queue": by_id},
        tmp_path / "page",
        source="test",
        since=None,
        min_labels=500,
        records=500,
    )
    text = render_html(page)
    assert "training rows (left out)" in text
    assert "queue: 350 labelled tickets left out as training rows" in text
    assert "unbiased" not in text
    assert page.summary["too_few"] == ["queue"]  # 150 live labels, not 500

    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    assert main(["report", "performance", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "queue: 150 labelled tickets the model was not trained on" in out
    assert "350 training rows left out" in out
    live = performance.performance_summary(by_id)
    print(
        f"unseen {unseen:.3f}, live {live['all']['accuracy']:.3f}, "
        f"training rows {live['training_rows']['accuracy']:.3f}, "
        f"naive {naive['all']['accuracy']:.3f}"
    )
