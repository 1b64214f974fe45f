"""``train --finetune`` stays alive: 200 tickets, one epoch, on the CPU, through the CLI.

The fine-tuned encoder must go the whole way a served model goes: fine-tuned on the
training part only, exported to ONNX int8 under the registry, recorded in the model's
metadata (name and graph sha256), and loadable by ``evaluate`` the way the worker loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ticketflow.cli.main import main
from ticketflow.devtools.sample import generate_tickets, write_tickets
from ticketflow.models.embedding import SentenceTransformerEncoder
from ticketflow.models.finetune import STAMP_FILE, FinetuneConfig, finetune_encoder
from ticketflow.models.registry import ModelRegistry

pytestmark = pytest.mark.slow

BASE = "sentence-transformers/all-MiniLM-L6-v2"


def test_finetune_moves_the_vectors_and_is_reused(tmp_path: Path) -> None:
    tickets = generate_tickets(120, seed=3)
    texts = [f"{t['subject']}\n{t['body']}" for t in tickets]
    labels = {"queue": [t["queue"] for t in tickets], "priority": [t["priority"] for t in tickets]}
    out = tmp_path / "tuned"
    config = FinetuneConfig(epochs=1, max_tokens=64)
    first = finetune_encoder(
        BASE, texts, labels, out, config=config, device="cpu", show_progress=False
    )
    assert not first.reused and first.device == "cpu"
    assert np.isfinite(first.final_loss)
    stamp = json.loads((out / STAMP_FILE).read_text())
    assert stamp["tickets"] == 120 and set(stamp["targets"]) == {"queue", "priority"}

    tuned = SentenceTransformerEncoder(str(out), max_tokens=64).encode(texts[:8])
    base = SentenceTransformerEncoder(BASE, max_tokens=64).encode(texts[:8])
    assert tuned.shape == base.shape
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-4)
    assert not np.allclose(tuned, base, atol=1e-3)  # one epoch moved the encoder

    again = finetune_encoder(BASE, texts, labels, out, config=config, show_progress=False)
    assert again.reused  # a retried Job does not fine-tune twice


def test_finetune_rejects_a_target_with_one_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two classes"):
        finetune_encoder(BASE, ["a", "b"], {"queue": ["x", "x"]}, tmp_path / "t")


def test_train_finetune_serves_the_tuned_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_tickets(generate_tickets(250, seed=11), tmp_path / "tickets.jsonl")
    registry_dir = tmp_path / "registry"
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(registry_dir))
    monkeypatch.setenv("DRIFT_REFERENCE_DIR", str(tmp_path / "reference"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EMBEDDING_BACKEND", "onnx-int8")
    monkeypatch.setenv("EMBEDDING_MAX_TOKENS", "64")
    monkeypatch.setenv("CASCADE", "false")
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--target",
            "queue",
            "--limit",
            "250",
            "--finetune",
            "--finetune-epochs",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "fine-tuned" in printed

    registry = ModelRegistry(registry_dir)
    version = registry.current_version()
    assert version is not None
    metadata = registry.metadata(version)
    tuned_dir = Path(metadata.embedding_model)
    assert tuned_dir.parent == registry_dir / "encoders"
    stamp = json.loads((tuned_dir / STAMP_FILE).read_text())
    assert stamp["tickets"] == 200  # the training part only: 250 rows, test_size 0.2
    assert metadata.embedding_backend == "onnx-int8"
    assert metadata.encoder_sha256  # the exported graph is pinned like the base model's

    # evaluate loads the encoder the way the worker does: by the model's recorded name.
    assert main(["evaluate", "--data", str(data), "--limit", "50", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["queue"]["n"] == 50
    assert metrics["queue"]["accuracy"] > 0.5  # generated queues are easy; a broken encoder is not


@pytest.mark.unit
@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        ({"pooling_mode": "mean", "embedding_dimension": 384}, "mean"),  # sentence-transformers 6
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
        ({"pooling_mode": "cls"}, "cls"),
    ],
)
def test_pooling_is_read_in_both_config_formats(
    tmp_path: Path, pooling: dict[str, object], expected: str
) -> None:
    from ticketflow.models.onnx_encoder import _sentence_config

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert _sentence_config(tmp_path) == (256, expected)
