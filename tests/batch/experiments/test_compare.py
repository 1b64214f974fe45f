"""The candidate comparison: the protocol on small generated data (unit), on any labelled file,
through the command, and a small fast subset on the real data sets (slow; skipped where
../shared/datasets is absent)."""

import csv
import json
from pathlib import Path

import pytest

from tests.batch.experiments.files import write_labelled_file
from tests.helpers import HashingEncoder
from ticketflow.batch import experiments
from ticketflow.batch.embedding_cache import CachedEncoder
from ticketflow.devtools.sample import generate_tickets

SHARED_DATASETS = experiments.default_datasets_dir()


def _write_sets(root: Path) -> tuple[experiments.Task, experiments.Task]:
    tickets = generate_tickets(240, seed=3)
    (root / "a").mkdir(parents=True)
    with (root / "a" / "tickets.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "body", "answer", "queue", "priority", "language"])
        for t in tickets:
            writer.writerow(
                [t["subject"] or "", t["body"], "LEAK", t["queue"], t["priority"], t["language"]]
            )
    (root / "b").mkdir()
    with (root / "b" / "tickets.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Document", "Topic_group"])
        for t in tickets:
            writer.writerow([t["body"].lower(), t["queue"]])
    return (
        experiments.Task("a", "a/tickets.csv", ("queue", "priority")),
        experiments.Task("b", "b/tickets.csv", ("Topic_group",), ("body=Document",), rows=200),
    )


@pytest.mark.unit
def test_harness_writes_the_table_and_picks_a_winner_by_cv(tmp_path: Path) -> None:
    tasks = _write_sets(tmp_path / "data")
    rows: list[dict[str, object]] = []
    request = experiments.ExperimentRequest(
        candidates=tuple(experiments.quick_candidates()), folds=3, progress=False
    )
    report = experiments.run_experiments(
        tmp_path / "data",
        HashingEncoder(),
        request,
        out_dir=tmp_path / "out",
        tasks=tasks,
        cost_encoder=HashingEncoder(),
        on_row=rows.append,
    )
    assert report["protocol"]["b"]["rows_used"] == 200  # stratified subsample
    assert report["protocol"]["a"]["rows_used"] == 240
    # 3 targets x (majority, TF-IDF, hybrid, hybrid + temperature)
    assert len(report["results"]) == len(rows) == 12
    names = {r["candidate"] for r in report["results"]}
    assert report["winner"] in names
    row = next(r for r in report["results"] if r["task"] == "a" and r["target"] == "queue")
    assert set(row["test"]["per_language_macro_f1"]) == {"de", "en"}
    assert {"ece", "auto_route", "review_cut", "per_class"} <= set(row["test"])
    assert row["cv"]["folds"] == 3
    assert "inference_cost" in report
    written = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert written["winner"] == report["winner"]
    table = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert "## a / queue" in table and "cover@P≥0.90" in table and "majority class" in table


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATASETS / "bueck-v3" / "tickets.csv").is_file()
    or not (SHARED_DATASETS / "endava-it" / "tickets.csv").is_file(),
    reason=f"evaluation data sets not found in {SHARED_DATASETS} (they live outside the repo)",
)
def test_quick_subset_on_the_real_datasets(tmp_path: Path) -> None:
    from ticketflow.batch.embedding_cache import DEFAULT_CACHE_DIR
    from ticketflow.models.embedding import SentenceTransformerEncoder

    encoder = CachedEncoder(
        SentenceTransformerEncoder("sentence-transformers/all-MiniLM-L6-v2"), DEFAULT_CACHE_DIR
    )
    request = experiments.ExperimentRequest(
        candidates=tuple(experiments.quick_candidates()),
        folds=3,
        rows={"bueck-v3": 300, "endava-it": 300},
        targets={"bueck-v3": ["queue"]},
        progress=False,
    )
    report = experiments.run_experiments(SHARED_DATASETS, encoder, request, out_dir=tmp_path)
    by_name = {(r["task"], r["candidate"]): r for r in report["results"]}
    for task in ("bueck-v3", "endava-it"):
        majority = by_name[(task, "majority class")]["test"]["macro_f1"]
        hybrid = by_name[(task, "hybrid + LR + temperature")]["test"]
        # Far above chance even on 240 training rows; calibrated enough to mean something.
        assert hybrid["macro_f1"] > majority + 0.15
        assert hybrid["ece"] < 0.2
    assert "per_language_macro_f1" in by_name[("bueck-v3", "majority class")]["test"]


@pytest.mark.unit
def test_cli_skips_with_a_clear_message_without_the_datasets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ticketflow.cli import build_parser

    args = build_parser().parse_args(["experiments", "--datasets", str(tmp_path / "none")])
    assert args.handler(args, None) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipping experiments:") and "bueck-v3/tickets.csv" in out
    assert not (tmp_path / "reports").exists()


@pytest.mark.unit
def test_any_labelled_file_gets_the_protocol_table_and_plots(tmp_path: Path) -> None:
    path = write_labelled_file(tmp_path / "mine.csv")
    task = experiments.file_task(path, ["Team", "Urgency"], ["body=Text"])
    assert Path(task.file).is_absolute() and task.name == "mine"
    request = experiments.ExperimentRequest(
        candidates=tuple(experiments.file_candidates()),
        folds=3,
        progress=False,
        min_class_rows=experiments.MIN_CLASS_ROWS,
    )
    report = experiments.run_experiments(
        Path(), HashingEncoder(), request, out_dir=tmp_path / "out", tasks=[task]
    )
    protocol = report["protocol"]["mine"]
    assert protocol["dropped_classes"]["classes"] == {"Team": ["Rare"]}
    assert protocol["rows_used"] == 257
    names = [r["candidate"] for r in report["results"] if r["target"] == "Team"]
    assert names[0] == "majority class"
    assert "TF-IDF word 1-2 + LR" in names and "TF-IDF word + char + LR" in names
    assert f"{experiments.DEFAULT_MODEL} + temperature" in names
    row = next(r for r in report["results"] if r["candidate"] == "TF-IDF word 1-2 + LR")
    assert set(row["test"]["per_language_macro_f1"]) == {"de", "en"}
    assert "0.90" in row["test"]["auto_route"] and "ece" in row["test"]
    table = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert "left out, fewer than 10 rows of Team: Rare" in table
    for kind in ("reliability", "coverage-precision", "confusion"):
        for target in ("Team", "Urgency"):
            png = tmp_path / "out" / "plots" / f"mine-{target}-{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
            assert f"](plots/mine-{target}-{kind}.png)" in table


@pytest.mark.unit
def test_cli_runs_the_protocol_and_the_encoder_comparison_on_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's wiring, with the hashing encoder in place of the configured ones."""
    from ticketflow.batch import configured
    from ticketflow.cli import main

    monkeypatch.setattr(configured, "encoder", lambda *a, **k: HashingEncoder())
    monkeypatch.setattr(configured, "static_encoder", lambda *a, **k: HashingEncoder(64, "s"))
    path = write_labelled_file(tmp_path / "mine.csv")
    common = ["--data", str(path), "--map", "body=Text", "--target", "Team"]
    out = tmp_path / "protocol"
    args = ["experiments", *common, "--quick", "--out", str(out)]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "## mine / Team" in (out / "results.md").read_text(encoding="utf-8")
    assert (out / "plots" / "mine-Team-coverage-precision.png").is_file()

    out = tmp_path / "encoders"
    args = ["experiments", *common, "--encoder", "onnx-int8", "--encoder", "static"]
    assert main([*args, "--encoder-rows", "150", "--folds", "3", "--out", str(out)]) == 0
    report = json.loads((out / "encoders.json").read_text(encoding="utf-8"))
    assert [r["encoder"] for r in report["results"]] == ["onnx-int8", "static"]
    assert report["rows_used"] < 150 and report["dropped_classes"] == {"Team": ["Rare"]}
    assert "| onnx-int8 (" in capsys.readouterr().out
