"""Every encoder backend on the real model: same vectors (up to quantisation), same labels."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.embedding import EncoderLoadError
from ticketflow.models.encoders import encoder_backend, encoder_sha256, load_encoder
from ticketflow.models.features import HYBRID
from ticketflow.models.onnx_encoder import GRAPH_FILE, OnnxEncoder
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

pytestmark = pytest.mark.slow

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Exports are built once per machine, as ticketflow does (CACHE_DIR/encoders).
CACHE = Path.home() / ".cache" / "ticketflow" / "encoders"


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], list[str]]:
    rows = generate_tickets(500, seed=5)
    texts = build_texts([Ticket.model_validate(r) for r in rows], max_chars=1000)
    return texts, [str(r["queue"]) for r in rows]


@pytest.fixture(scope="module")
def torch_vectors(sample: tuple[list[str], list[str]]) -> np.ndarray:
    encoder = load_encoder(MODEL, "torch", export_root=Path("/nonexistent"), threads=2)
    assert encoder_backend(encoder) == "torch" and encoder_sha256(encoder) is None
    return encoder.encode(sample[0])


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.999), ("onnx-int8", 0.97)])
def test_backend_gives_the_torch_labels(
    backend: str,
    min_cosine: float,
    sample: tuple[list[str], list[str]],
    torch_vectors: np.ndarray,
    tmp_path: Path,
) -> None:
    texts, queues = sample
    encoder = load_encoder(MODEL, backend, export_root=tmp_path, cache_root=CACHE, threads=2)  # type: ignore[arg-type]
    assert encoder_backend(encoder) == backend
    vectors = encoder.encode(texts)
    cosine = (vectors * torch_vectors).sum(axis=1)
    assert cosine.min() >= min_cosine, f"{backend}: min cosine {cosine.min():.4f}"
    # A model trained on torch vectors, served with this backend's vectors.
    train, held = slice(0, 250), slice(250, None)
    model = TicketClassifier.fit(
        torch_vectors[train], {"queue": queues[train]}, texts=texts[train], features=HYBRID
    )
    reference = [p["queue"].label for p in model.predict(torch_vectors[held], texts[held])]
    served = [p["queue"].label for p in model.predict(vectors[held], texts[held])]
    agreement = np.mean([a == b for a, b in zip(reference, served, strict=True)])
    assert agreement >= 0.98, f"{backend}: {agreement:.1%} of labels agree with torch"


def test_a_tampered_export_is_refused(tmp_path: Path) -> None:
    encoder = load_encoder(MODEL, "onnx-int8", export_root=tmp_path, cache_root=CACHE)
    assert isinstance(encoder, OnnxEncoder)
    copy = tmp_path / "copy"
    shutil.copytree(next(p for p in tmp_path.iterdir() if p.name.endswith("--f1")), copy)
    with (copy / GRAPH_FILE).open("r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\x00" * 16)
    with pytest.raises(EncoderLoadError, match="does not match its manifest"):
        OnnxEncoder(copy)


def test_length_buckets_give_the_vectors_of_one_padded_run(
    sample: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    # fp32: its vectors do not depend on the run a text is in (int8's dynamic activation
    # scales do), so bucketing must change nothing but the padding, and keep the row order.
    texts = sample[0][:64]
    bucketed = load_encoder(MODEL, "onnx", export_root=tmp_path, cache_root=CACHE, threads=2)
    assert isinstance(bucketed, OnnxEncoder) and bucketed.bucket_tokens > 0
    directory = next(p for p in tmp_path.iterdir() if p.name.endswith("--f1"))
    single = OnnxEncoder(directory, batch_size=64, bucket_tokens=0, threads=2)
    a, b = bucketed.encode(texts), single.encode(texts)
    lengths = {len(e.ids) for e in bucketed._tokenizer.encode_batch(texts)}
    assert len(lengths) > 2, "the sample needs texts of several lengths"
    assert (a * b).sum(axis=1).min() >= 0.99999
