"""``ticketflow drift report --input`` takes the worker's monitor records or a ticket file:
tickets are labelled by the current model, as the worker would, and compared with its
reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import HashingEncoder
from tests.models.test_registry import save_model
from ticketflow.cli import main
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.registry import ModelRegistry
from ticketflow.monitoring.service import holds_monitor_records

pytestmark = pytest.mark.unit


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry with model v1 (hashing encoder) current, settings under ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    save_model(ModelRegistry(tmp_path / "registry"), "v1")
    for name, value in {
        "MODEL_REGISTRY_DIR": str(tmp_path / "registry"),
        "DRIFT_REFERENCE_DIR": str(tmp_path / "reference"),
        "DRIFT_REPORT_DIR": str(tmp_path / "reports"),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached with --input
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        "ticketflow.monitoring.service.serving_encoders", lambda *a, **k: HashingEncoder()
    )
    return tmp_path


@pytest.mark.slow
def test_a_ticket_file_is_labelled_and_compared_with_the_reference(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = write_tickets(generate_tickets(200, seed=1), served / "reference.jsonl")
    assert main(["drift", "reference", "--data", str(reference)]) == 0
    recent = write_tickets(generate_tickets(120, seed=2), served / "recent.csv")
    out = served / "report.html"
    argv = ["drift", "report", "--input", str(recent), "--window", "100", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "100 records of model v1: drifted=" in printed, printed
    assert "label:queue" in printed and out.is_file()


def test_content_decides_records_or_tickets(tmp_path: Path) -> None:
    tickets = write_tickets(generate_tickets(3, seed=1), tmp_path / "t.jsonl")
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"ticket_id": "T-1", "vector_f16_b64": "AAA="}) + "\n")
    assert holds_monitor_records(records)
    assert not holds_monitor_records(tickets)
    assert not holds_monitor_records(write_tickets(generate_tickets(3), tmp_path / "t.csv"))


def test_a_broken_records_file_is_one_line_and_exit_2(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = served / "records.jsonl"
    path.write_text(json.dumps({"ticket_id": "T-1", "vector_f16_b64": "AAA="}) + "\n")
    assert main(["drift", "report", "--input", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"ticketflow drift: error: {path}:1: not a monitor record: "
    ), lines


def test_a_missing_ticket_file_is_exit_2(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drift", "report", "--input", "nope.csv"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ticketflow drift: error: cannot read nope.csv: no such file"
    )
