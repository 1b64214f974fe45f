"""Benchmark: does the int8 encoder give the fp32 encoder's labels? (the current model)

    python -m bench.int8_agreement --data ../shared/datasets/bueck-v3/tickets.csv \\
        --target queue --target type --target priority [--map F=COL] [--test-size 0.2]

Takes the registry's current model (MODEL_REGISTRY_DIR) and the test part of the split
``ticketflow train`` made with the same ``--test-size`` and ``--seed``, so the tickets are
ones the model never saw. The test texts are encoded twice with the model's own encoder at
the model's token limit: the ONNX int8 export the worker serves, and the torch fp32 original.
Both go through the same heads. Prints, per target, the share of tickets where the two give
the same label. It does this with the transformer stage on every ticket, and as served
through the cascade, where the static stage keeps some tickets and no transformer runs for
them. It also prints the mean cosine between the two encoders' vectors. A fine-tuned model
(``train --finetune``) is measured the same way; docs/model-quality.md has the numbers.

Needs torch (the fp32 side), which the worker never imports.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ticketflow.batch import configured
from ticketflow.batch.evaluate import predict_rows
from ticketflow.batch.train import split_indices
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping
from ticketflow.models.classifier import Prediction
from ticketflow.models.registry import ModelRegistry
from ticketflow.models.text import build_texts

logger = logging.getLogger(__name__)


def agreement(
    a: Sequence[Mapping[str, Prediction]], b: Sequence[Mapping[str, Prediction]], target: str
) -> float:
    """The share of rows where ``a`` and ``b`` give ``target`` the same label."""
    return float(np.mean([x[target].label == y[target].label for x, y in zip(a, b, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN")
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings()
    data = configured.load_data(
        settings, args.data, targets=args.target, mapping=ColumnMapping.parse(args.map)
    )
    registry = ModelRegistry(settings.model_registry_dir)
    model = registry.load()
    meta = model.metadata
    texts = build_texts(data.tickets, max_chars=meta.max_text_chars)
    _, test = split_indices(
        len(texts), data.labels[args.target[0]], test_size=args.test_size, seed=args.seed
    )
    test_texts = [texts[i] for i in test]
    tokens = meta.embedding_max_tokens
    int8 = configured.encoder(
        settings, meta.embedding_model, backend="onnx-int8", max_tokens=tokens
    )
    fp32 = configured.encoder(settings, meta.embedding_model, backend="torch", max_tokens=tokens)
    started = time.perf_counter()
    v8 = int8.encode(test_texts, show_progress=False)
    int8_seconds = time.perf_counter() - started
    started = time.perf_counter()
    v32 = fp32.encode(test_texts, show_progress=False)
    fp32_seconds = time.perf_counter() - started
    cosine = float(np.mean(np.sum(v8 * v32, axis=1)))
    classifier = model.classifier
    static = None
    if classifier.first_stage is not None:
        static = configured.static_encoder(settings, meta.embedding_model).encode(test_texts)
    every = (classifier.predict(v8, test_texts), classifier.predict(v32, test_texts))
    served = (
        predict_rows(classifier, v8, test_texts, static),
        predict_rows(classifier, v32, test_texts, static),
    )
    every_shares = {t: agreement(*every, t) for t in meta.targets}
    served_shares = {t: agreement(*served, t) for t in meta.targets}
    result = {
        "model": meta.version,
        "encoder": meta.embedding_model,
        "max_tokens": tokens,
        "tickets": len(test_texts),
        "cosine_int8_fp32": cosine,
        "seconds": {"int8": int8_seconds, "fp32": fp32_seconds},
        "transformer_on_every_ticket": every_shares,
        "as_served": served_shares,
    }
    print(f"model {meta.version} ({meta.embedding_model}, {tokens} tokens)")
    print(
        f"{len(test_texts)} test tickets: int8 {int8_seconds:.1f}s, fp32 {fp32_seconds:.1f}s, "
        f"mean cosine(int8, fp32) {cosine:.4f}"
    )
    print("| target | int8 = fp32 label, transformer on every ticket | as served (cascade) |")
    print("|---|---:|---:|")
    for t in meta.targets:
        print(f"| {t} | {100 * every_shares[t]:.1f}% | {100 * served_shares[t]:.1f}% |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
