"""Benchmark: the int8 encoder with and without length buckets (issue #32, lever a).

    python -m bench.encoder_buckets [--datasets ../shared/datasets] [--widths 0,16,32]
                                    [--batch-size 16]
                                    [--call 20] [--rounds 5] [--threads 2]

On bueck-v3's test part (the split of ``ticketflow experiments``), the default backend at
``EMBEDDING_MAX_TOKENS``: each ``--widths`` value is an :class:`OnnxEncoder` whose runs group
texts by bands of that many tokens (0: runs of ``--batch-size`` in length order, padded to
the longest; the worker's runs are ``EMBEDDING_BATCH_SIZE``, 16).
Texts go in calls of ``--call`` rows, about what the worker escalates from a batch of 64.
The variants are timed in turn, the order rotated every round, and the ratios are to width
0 within a round (the machine is shared: only neighbouring timings compare). Each variant's
test vectors, encoded in the same calls, are then scored by one hybrid model fitted on the
cached training vectors: macro-F1 of the target and the share of labels equal to width 0's.
``--core``: instead, the cascade trained as ``bench.speed`` trains it, its in-process core
(static model, first stage, the transformer on the escalated) timed with each width.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from bench.rounds import interleave, timed
from ticketflow.batch.embedding_cache import CachedEncoder
from ticketflow.batch.experiments import SEED, TEST_SIZE, default_datasets_dir
from ticketflow.batch.train import TrainRequest, split_indices, train
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, LabeledData, load_labeled
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.encoders import encoders_root
from ticketflow.models.onnx_encoder import OnnxEncoder, ensure_export
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.recipe import ModelConfig
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.static_encoder import StaticEncoder, ensure_static
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

REPO = Path(__file__).resolve().parents[1]


def in_calls(encoder: OnnxEncoder, texts: list[str], call: int) -> np.ndarray:
    return np.vstack([encoder.encode(texts[i : i + call]) for i in range(0, len(texts), call)])


def time_core(
    args: argparse.Namespace,
    settings: Settings,
    data: LabeledData,
    encoders: dict[int, OnnxEncoder],
    tickets: list[Ticket],
) -> None:
    """The cascade core (``LabelingPipeline.run`` on batches of ``WORKER_BATCH_MAX``) with
    each width's encoder, on the test tickets: tickets/s and CPU ms per ticket per round."""
    widths = list(encoders)
    root = encoders_root(settings.model_registry_dir)
    static = StaticEncoder(
        ensure_static(settings.embedding_model, root, cache_root=settings.cache_dir / "encoders"),
        source_model=settings.embedding_model,
    )
    registry = ModelRegistry(Path(tempfile.mkdtemp(prefix="ticketflow-buckets-")))
    trained = train(
        TrainRequest(
            data,
            max_text_chars=settings.max_text_chars,
            test_size=TEST_SIZE,
            seed=SEED,
            cascade_agreement=settings.cascade_agreement,
            cascade_escalate=settings.cascade_escalate,
        ),
        encoder=CachedEncoder(encoders[widths[0]], settings.cache_dir / "embeddings"),
        registry=registry,
        review=settings.review_policy(),
        static_encoder=static,
        progress=False,
    )
    classifier = registry.load(trained.version).classifier
    batch = settings.worker_batch_max
    pipelines = {
        w: LabelingPipeline(
            encoders[w], classifier, max_text_chars=settings.max_text_chars, static_encoder=static
        )
        for w in widths
    }
    escalated: dict[int, int] = {}

    def run(w: int) -> tuple[float, float]:
        pipelines[w].run(tickets[:8])

        def core() -> None:
            escalated[w] = sum(
                pipelines[w].run(tickets[i : i + batch]).counts.get("escalated", 0)
                for i in range(0, len(tickets), batch)
            )

        return timed(core, len(tickets))

    timings = interleave(widths, run, args.rounds)
    print(f"escalated per width: {escalated} of {len(tickets)}")
    print("\n".join(timings.summary(lambda w: f"core, width {w}")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=default_datasets_dir())
    parser.add_argument("--target", default="queue")
    parser.add_argument("--widths", default="0,16,32")
    parser.add_argument("--call", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--probe", type=int, default=400, help="test texts timed per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="default: EMBEDDING_BATCH_SIZE")
    parser.add_argument(
        "--core",
        action="store_true",
        help="instead: train the cascade as bench.speed does and time its in-process core",
    )
    args = parser.parse_args()
    settings = Settings()
    batch_size = args.batch_size or settings.embedding_batch_size
    data = load_labeled(
        args.datasets / "bueck-v3" / "tickets.csv",
        targets=[args.target],
        mapping=ColumnMapping.parse([]),
        progress=False,
    )
    texts = build_texts(data.tickets, max_chars=settings.max_text_chars)
    y = data.labels[args.target]
    train_idx, test_idx = split_indices(len(texts), y, test_size=TEST_SIZE, seed=SEED)
    directory = ensure_export(
        settings.embedding_model,
        "onnx-int8",
        encoders_root(settings.model_registry_dir),
        cache_root=settings.cache_dir / "encoders",
    )
    widths = [int(w) for w in args.widths.split(",")]
    encoders = {
        w: OnnxEncoder(
            directory,
            batch_size=batch_size,
            threads=args.threads,
            name=settings.embedding_model,
            max_tokens=settings.embedding_max_tokens,
            bucket_tokens=w,
        )
        for w in widths
    }
    test_texts = [texts[i] for i in test_idx]
    if args.core:
        time_core(args, settings, data, encoders, [data.tickets[i] for i in test_idx])
        return
    probe = test_texts[: args.probe]

    def run(w: int) -> tuple[float, float]:
        encoders[w].encode(probe[:8])
        return timed(lambda: in_calls(encoders[w], probe, args.call), len(probe))

    timings = interleave(widths, run, args.rounds)
    print("\n".join(timings.summary(lambda w: f"width {w}")))
    config = ModelConfig()
    train_vectors = CachedEncoder(encoders[widths[0]], settings.cache_dir / "embeddings").encode(
        [texts[i] for i in train_idx], show_progress=True
    )
    model = TicketClassifier.fit(
        train_vectors,
        {args.target: [y[i] for i in train_idx]},
        texts=[texts[i] for i in train_idx],
        features=config.features,
        c=config.c,
        class_weight=config.class_weight,
    )
    y_test = [y[i] for i in test_idx]
    labels: dict[int, list[str]] = {}
    vectors: dict[int, np.ndarray] = {}
    for w in widths:
        vectors[w] = in_calls(encoders[w], test_texts, args.call)
        labels[w] = [p[args.target].label for p in model.predict(vectors[w], test_texts)]
    for w in widths:
        same = np.mean([a == b for a, b in zip(labels[w], labels[widths[0]], strict=True)])
        cosine = np.sum(vectors[w] * vectors[widths[0]], axis=1)
        print(
            f"width {w:>3}: test macro-F1 {f1_score(y_test, labels[w], average='macro'):.4f}, "
            f"labels equal to width {widths[0]}: {100 * same:.1f}%, cosine to width "
            f"{widths[0]}: mean {cosine.mean():.4f}, min {cosine.min():.4f}"
        )


if __name__ == "__main__":
    main()
