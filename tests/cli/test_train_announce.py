"""``ticketflow train`` that makes its model current announces it on model-updates, as
``ticketflow models promote`` does; a broker that does not answer costs a warning, not the
training."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.cli.test_unreachable_broker import closed_port
from tests.helpers import HashingEncoder
from ticketflow.adapters.kafka.clients import consume
from ticketflow.cli.main import main
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.registry import ModelRegistry
from ticketflow.schemas import ModelUpdate


def _train_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bootstrap: str) -> Path:
    """A labelled file, settings under ``tmp_path``, and the cheap hashing encoder in place of
    the configured one (the announcement is under test, not the encoder)."""
    data = tmp_path / "t.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in generate_tickets(120, seed=4)) + "\n")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_MODEL_UPDATES": f"train-updates-{uuid.uuid4().hex[:8]}",
        "MODEL_REGISTRY_DIR": str(tmp_path / "models"),
        "DRIFT_REFERENCE_DIR": str(tmp_path / "reference"),
        "CASCADE": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("ticketflow.batch.configured.encoder", lambda *a, **k: HashingEncoder())
    return data


@pytest.mark.unit
def test_an_unreachable_broker_costs_a_warning_not_the_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    data = _train_env(tmp_path, monkeypatch, f"127.0.0.1:{port}")
    monkeypatch.setattr("ticketflow.cli.models.ANNOUNCE_TIMEOUT_S", 0.5)
    assert main(["train", "--data", str(data), "--target", "queue"]) == 0
    out, err = capsys.readouterr()
    registry = ModelRegistry(tmp_path / "models")
    current = registry.current_version()
    assert current is not None and f"registered model {current}" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert current in warnings[0] and "not announced" in warnings[0]
    assert f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}" in warnings[0]


@pytest.mark.unit
def test_no_promote_announces_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _train_env(tmp_path, monkeypatch, f"127.0.0.1:{closed_port()}")
    called: list[object] = []
    monkeypatch.setattr("ticketflow.cli.train.announce", lambda *a: called.append(a))
    assert main(["train", "--data", str(data), "--target", "queue", "--no-promote"]) == 0
    assert called == [] and ModelRegistry(tmp_path / "models").current_version() is None
    assert "warning" not in capsys.readouterr().err


@pytest.mark.integration
def test_train_announces_the_new_model_on_model_updates(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _train_env(tmp_path, monkeypatch, kafka_bootstrap)
    topic = os.environ["KAFKA_TOPIC_MODEL_UPDATES"]
    assert main(["train", "--data", str(data), "--target", "queue"]) == 0
    out, err = capsys.readouterr()
    version = ModelRegistry(tmp_path / "models").current_version()
    assert version is not None and f"announced {version}" in out, err
    updates = [
        ModelUpdate.model_validate(record)
        for record in consume(
            {"bootstrap.servers": kafka_bootstrap}, topic, max_messages=1, timeout_s=10.0
        )
    ]
    assert [u.version for u in updates] == [version]
    assert updates[0].action == "promote" and updates[0].previous_version is None


@pytest.mark.unit
def test_a_class_too_small_to_calibrate_is_printed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #30 item 4: on stdout, once, and in the model's metadata."""
    port = closed_port()
    data = _train_env(tmp_path, monkeypatch, f"127.0.0.1:{port}")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    from ticketflow.batch.train import split_indices

    # A 1-row class makes the split unstratified, so which rows train does not depend on the
    # labels: put the lonely class on one of them.
    train_rows, _ = split_indices(
        len(rows), ["one", *["many"] * (len(rows) - 1)], test_size=0.2, seed=42
    )
    rows[train_rows[0]]["queue"] = "Lonely queue"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setattr("ticketflow.cli.models.ANNOUNCE_TIMEOUT_S", 0.5)
    assert main(["train", "--data", str(data), "--target", "queue", "--no-promote"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "'Lonely queue'" in line]
    assert len(lines) == 1 and lines[0].startswith("WARNING queue: 1 class(es)"), out
    assert "too few to calibrate on" in lines[0]
    registry = ModelRegistry(tmp_path / "models")
    (version,) = registry.versions()
    metadata = registry.metadata(version)
    assert metadata.notes == [lines[0].removeprefix("WARNING ")]
    assert "queue" in metadata.review_thresholds  # calibrated from the other classes
