"""The encoder comparison: the same rows for every encoder, encoder names, the command."""

import json
from pathlib import Path

import pytest

from tests.batch.experiments.files import write_labelled_file
from tests.helpers import HashingEncoder
from ticketflow.batch import experiments


@pytest.mark.unit
def test_encoders_are_compared_on_the_same_rows(tmp_path: Path) -> None:
    path = write_labelled_file(tmp_path / "tickets.csv")
    task = experiments.file_task(path, ["Team"], ["body=Text"])
    assert task.name == tmp_path.name  # "tickets.csv" says nothing; its folder does
    choices = [
        experiments.EncoderChoice("small", "hashing 64", lambda: HashingEncoder(64, "h64")),
        experiments.EncoderChoice("large", "hashing 512", lambda: HashingEncoder(512, "h512")),
    ]
    request = experiments.ExperimentRequest(
        folds=3,
        rows={task.name: 200},
        min_class_rows=experiments.MIN_CLASS_ROWS,
        progress=False,
    )
    report = experiments.compare_encoders(task, choices, request, out_dir=tmp_path / "out")
    assert report["dropped_classes"] == {"Team": ["Rare"]}
    assert 195 <= report["rows_used"] < 200  # the sample less its rows of the rare class
    rows = {r["encoder"]: r for r in report["results"]}
    assert rows["small"]["dimension"] == 64 and rows["large"]["dimension"] == 512
    assert all(
        r["tickets_per_second"] > 0 and r["tickets"] == report["rows_used"] for r in rows.values()
    )
    scores = rows["large"]["targets"]["Team"]
    assert set(scores) == {
        "embedding + LR C=10",
        experiments.DEFAULT_MODEL,
        f"{experiments.DEFAULT_MODEL} + temperature",
    }
    assert 0.0 <= scores["embedding + LR C=10"]["test_macro_f1"] <= 1.0
    table = (tmp_path / "out" / "encoders.md").read_text(encoding="utf-8")
    assert "| small (hashing 64) | 64 |" in table and "Team: default model test F1" in table
    assert json.loads((tmp_path / "out" / "encoders.json").read_text())["task"] == task.name


@pytest.mark.unit
def test_encoder_names_resolve_to_backends_or_local_models(tmp_path: Path) -> None:
    from ticketflow.config import Settings
    from ticketflow.data.errors import InputError

    choices = experiments.encoder_choices(["all", "onnx"], Settings())
    assert [c.name for c in choices] == ["torch", "onnx", "onnx-int8", "static"]
    static = tmp_path / "m2v"
    static.mkdir()
    (static / "config.json").write_text('{"model_type": "model2vec"}', encoding="utf-8")
    assert experiments.local_encoder(str(static)).description.startswith("model2vec")
    (tmp_path / "st").mkdir()
    assert experiments.local_encoder(str(tmp_path / "st")).description.startswith(
        "sentence-transformers"
    )
    with pytest.raises(InputError, match="--encoder 'no-such-model'"):
        experiments.local_encoder("no-such-model")


@pytest.mark.unit
def test_cli_encoder_needs_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ticketflow.cli import main

    assert main(["experiments", "--encoder", "static", "--out", str(tmp_path)]) == 2
    assert "add --data PATH" in capsys.readouterr().err
    missing = tmp_path / "none.csv"
    assert main(["experiments", "--data", str(missing), "--out", str(tmp_path)]) == 2
    assert f"cannot read {missing}: no such file" in capsys.readouterr().err
