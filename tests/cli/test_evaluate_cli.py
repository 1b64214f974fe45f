"""``ticketflow evaluate``: the predictions file, the confusion matrix and coverage and
precision at the model's stored cuts, on a model trained with the cheap hashing encoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from ticketflow.batch.train import TrainRequest, train
from ticketflow.cli.main import main
from ticketflow.data.datasets import load_labeled
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.review import ReviewPolicy

pytestmark = pytest.mark.unit

TARGETS = ["queue", "priority"]


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, ModelRegistry]:
    """A registry holding a current model, and a labelled file it was not trained on."""
    registry = ModelRegistry(tmp_path / "models")
    train_file = write_tickets(generate_tickets(200, seed=1), tmp_path / "train.jsonl")
    train(
        TrainRequest(load_labeled(train_file, targets=TARGETS, progress=False), 1000),
        encoder=HashingEncoder(),
        registry=registry,
        progress=False,
    )
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry.root))
    monkeypatch.setattr("ticketflow.batch.configured.encoder", lambda *a, **k: HashingEncoder())
    data = write_tickets(generate_tickets(60, seed=9), tmp_path / "eval.csv")
    return data, registry


def test_predictions_file_has_one_row_per_ticket(
    trained: tuple[Path, ModelRegistry], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = trained
    out = tmp_path / "pred.csv"
    assert main(["evaluate", "--data", str(data), "--predictions", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 60
    expected = ["ticket_id"] + [
        f"{t}_{c}" for t in TARGETS for c in ("truth", "prediction", "probability", "needs_review")
    ]
    assert list(rows[0]) == expected
    assert all(0 <= float(r["queue_probability"]) <= 1 for r in rows)
    text = capsys.readouterr().out
    assert "confusion (rows true, columns predicted)" in text
    assert "at the model's review cuts" in text
    assert f"wrote 60 predictions to {out}" in text


def test_json_confusion_and_cuts_match_the_predictions(
    trained: tuple[Path, ModelRegistry], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, registry = trained
    out = tmp_path / "pred.jsonl"
    assert main(["evaluate", "--data", str(data), "--json", "--predictions", str(out)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 60
    classifier = registry.load().classifier
    cuts = ReviewPolicy().cuts(classifier)
    for target in TARGETS:
        matrix = metrics[target]["confusion"]["matrix"]
        assert sum(map(sum, matrix)) == len(records)
        # coverage and precision at the stored cut, computed directly from the file
        routed = [r for r in records if r[f"{target}_probability"] >= cuts.thresholds[target]]
        at_cut = metrics[target]["at_cut"]
        assert at_cut["threshold"] == cuts.thresholds[target]
        assert at_cut["coverage"] == pytest.approx(len(routed) / len(records))
        assert all(not r[f"{target}_needs_review"] for r in routed)
        if routed:
            right = sum(r[f"{target}_truth"] == r[f"{target}_prediction"] for r in routed)
            assert at_cut["precision"] == pytest.approx(right / len(routed))
