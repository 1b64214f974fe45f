"""Bad files, mappings and settings: one line naming what is wrong, exit 2, nothing done."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.kafka.test_clients import FakeProducer
from ticketflow.adapters.kafka import clients
from ticketflow.cli import build_parser, main
from ticketflow.devtools.sample import generate_tickets, write_tickets

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty directory, with the registry and caches under it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    return cwd


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# --- settings --------------------------------------------------------------------------------


def test_a_bad_setting_is_one_line_and_exit_2_even_for_sample(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "bogus")
    assert main(["sample", "--n", "1", "--out", "t.jsonl"]) == 2
    assert stderr_lines(capsys) == [
        "ticketflow: bad setting KAFKA_SECURITY_PROTOCOL='bogus': Input should be "
        "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"
    ]
    assert not Path("t.jsonl").exists()


def test_each_bad_setting_gets_its_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "bogus")
    monkeypatch.setenv("WORKER_BATCH_WITHIN_S", "-1")
    assert main(["models", "list"]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 2
    assert any(
        line.startswith("ticketflow: bad setting WORKER_BATCH_WITHIN_S='-1':") for line in lines
    )


def test_the_help_documents_the_exit_codes() -> None:
    text = build_parser().format_help()
    assert "exit codes:" in text
    for code in ("0  done", "1  failed", "2  usage error, bad input file", "3  broker"):
        assert code in text


# --- train: the file and the mapping are checked before the encoder -------------------------


@pytest.fixture
def no_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder was loaded before the data were checked")

    monkeypatch.setattr("ticketflow.batch.configured.encoder", refuse)
    monkeypatch.setattr("ticketflow.batch.configured.static_encoder", refuse)


@pytest.mark.usefixtures("no_encoder")
def test_train_on_an_empty_file_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("empty.csv").write_text("", encoding="utf-8")
    assert main(["train", "--data", "empty.csv"]) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("ticketflow train: error: cannot read empty.csv: the file is empty")
    assert not (tmp_path / "registry").exists()


@pytest.mark.usefixtures("no_encoder")
def test_train_with_a_missing_mapped_column_lists_the_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tickets(generate_tickets(20), Path("t.csv"))
    assert main(["train", "--data", "t.csv", "--map", "body=NoSuchColumn"]) == 2
    [line] = stderr_lines(capsys)
    assert "'NoSuchColumn' (mapped to body)" in line
    assert "the columns are: ticket_id, subject, body" in line
    assert not (tmp_path / "registry").exists()


@pytest.mark.usefixtures("no_encoder")
def test_train_without_a_text_column_fails_before_the_encoders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("t.csv").write_text("ticket_id,queue\nT-1,Billing\nT-2,IT\n", encoding="utf-8")
    assert main(["train", "--data", "t.csv"]) == 2
    [line] = stderr_lines(capsys)
    assert "no text column" in line and "t.csv" in line
    assert not (tmp_path / "registry").exists()


# --- produce: skipped rows are warnings; nothing sent is a failure ----------------------------


@pytest.fixture
def broker_answers(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    monkeypatch.setattr("ticketflow.cli.tickets.require_broker", lambda settings: None)
    FakeProducer.instances = []
    FakeProducer.fail_keys = set()
    monkeypatch.setattr(clients, "Producer", FakeProducer)
    return FakeProducer


def test_produce_with_some_rows_skipped_exits_0(
    broker_answers: type[FakeProducer], capsys: pytest.CaptureFixture[str]
) -> None:
    Path("t.jsonl").write_text('{"ticket_id": "T-1", "body": "a"}\nnope\n', encoding="utf-8")
    assert main(["produce", "t.jsonl"]) == 0
    assert "published 1 tickets to tickets; skipped 1" in capsys.readouterr().out
    assert len(broker_answers.instances[0].sent) == 1


def test_produce_with_every_row_skipped_exits_1(
    broker_answers: type[FakeProducer], capsys: pytest.CaptureFixture[str]
) -> None:
    Path("t.jsonl").write_text('{"body": "no id"}\nnope\n', encoding="utf-8")
    assert main(["produce", "t.jsonl"]) == 1
    assert "no row of t.jsonl could be sent" in capsys.readouterr().err


@pytest.mark.usefixtures("broker_answers")
def test_produce_with_a_missing_mapped_column_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    write_tickets(generate_tickets(3), Path("t.csv"))
    assert main(["produce", "t.csv", "--map", "body=Text"]) == 2
    [line] = stderr_lines(capsys)
    assert "t.csv" in line and "'Text' (mapped to body)" in line


def test_feedback_without_a_correction_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["feedback", "T-1"]) == 2
    [line] = stderr_lines(capsys)
    assert "nothing to correct" in line
