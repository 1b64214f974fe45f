"""Numbers and settings are checked once, the same way on the command line and in the
environment: one line, exit 2, before any file is read or encoder loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketflow.cli import main
from ticketflow.config import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty directory (no .env), with the registry under it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.delenv("REVIEW_PRECISION", raising=False)
    monkeypatch.delenv("EMBEDDING_DEVICE", raising=False)
    return cwd


def exit_code(argv: list[str]) -> int:
    """``main``'s code, also when argparse exits (SystemExit) for a bad option."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_review_precision_on_the_command_line_is_refused_as_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(["train", "--data", "t.jsonl", "--review-precision", "2"]) == 2
    cli = one_line(capsys)
    monkeypatch.setenv("REVIEW_PRECISION", "2")
    assert exit_code(["train", "--data", "t.jsonl"]) == 2
    env = one_line(capsys)
    reason = "Input should be less than or equal to 1"
    assert cli.endswith(f"(as REVIEW_PRECISION): {reason} (see ticketflow train --help)"), cli
    assert "--review-precision" in cli and "'2'" in cli
    assert env == f"ticketflow: bad setting REVIEW_PRECISION='2': {reason}"


def test_a_negative_limit_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["train", "--data", "t.jsonl", "--limit", "-5"]) == 2
    line = one_line(capsys)
    assert "argument --limit: bad value '-5': Input should be greater than or equal to 1" in line


@pytest.mark.parametrize("value", ["1.5", "0", "-0.2", "half"])
def test_a_test_size_outside_0_1_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["train", "--data", "t.jsonl", "--test-size", value]) == 2
    line = one_line(capsys)
    assert line.startswith(f"ticketflow train: error: argument --test-size: bad value {value!r}")


@pytest.mark.parametrize(
    "argv",
    [
        ["experiments", "--data", "t.jsonl", "--folds", "1"],
        ["drift", "report", "--window", "0"],
        ["produce", "--sample", "3", "--rate", "-1"],
        ["topics", "create", "--partitions", "0"],
        ["serve", "--port", "70000"],
    ],
    ids=" ".join,
)
def test_other_numbers_are_checked_too(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(argv) == 2
    assert "bad value" in one_line(capsys)


def test_a_bad_embedding_device_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBEDDING_DEVICE", "banana")
    assert exit_code(["train", "--data", "t.jsonl"]) == 2
    assert one_line(capsys) == (
        "ticketflow: bad setting EMBEDDING_DEVICE='banana': expected cpu, cuda, cuda:N or mps"
    )


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps"])
def test_known_devices_are_accepted(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_DEVICE", device)
    assert Settings().embedding_device == device


def cp1252_tickets(path: Path) -> Path:
    """120 generated tickets as a CSV in cp1252, with accented characters in every body."""
    import csv
    import io

    from ticketflow.devtools.sample import generate_tickets

    rows = generate_tickets(120, seed=4)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["ticket_id", "subject", "body", "queue"])
    writer.writeheader()
    for row in rows:
        body = f"{row['body']} — réglé, café crème, 5 €"
        writer.writerow({**{k: row[k] for k in ("ticket_id", "subject", "queue")}, "body": body})
    path.write_bytes(out.getvalue().encode("cp1252"))
    return path


def test_a_cp1252_file_trains_with_encoding(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import HashingEncoder

    data = cp1252_tickets(Path("t.csv"))
    monkeypatch.setenv("CASCADE", "false")
    monkeypatch.setenv("DRIFT_REFERENCE_DIR", "reference")
    monkeypatch.setattr("ticketflow.batch.configured.encoder", lambda *a, **k: HashingEncoder())
    argv = ["train", "--data", str(data), "--no-promote"]
    assert exit_code(argv) == 2
    line = one_line(capsys)
    # The first physical line with an accent (generated bodies span lines).
    first = 1 + next(i for i, raw in enumerate(data.read_bytes().split(b"\n")) if b"\x97" in raw)
    assert line.startswith(f"ticketflow train: error: t.csv:{first}: not utf-8 text (byte 0x97)")
    assert "--encoding" in line
    assert exit_code([*argv, "--encoding", "cp1252"]) == 0
    assert "registered model" in capsys.readouterr().out


def test_a_bad_eval_file_is_bad_input_for_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, as every command's bad file, and before the vector store is opened."""
    from tests.models.test_registry import save_model
    from ticketflow.models.registry import ModelRegistry

    save_model(ModelRegistry(tmp_path / "registry"), "v1")
    Path("eval.csv").write_text("id,queue\n1,Billing\n", encoding="utf-8")
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "chroma"))
    assert exit_code(["retrain", "--eval-file", "eval.csv", "--no-promote"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "ticketflow retrain: error: eval.csv: needs a ticket_id column "
        "(vectors come from the store)"
    )
    assert not (tmp_path / "chroma").exists()
