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
