"""Batch commands: sample, train, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from models.settings import Settings

logger = logging.getLogger(__name__)


def register(commands: Any) -> None:
    sample = commands.add_parser("sample", help="write generated, labelled sample tickets")
    sample.add_argument("--n", type=int, default=1000, help="how many tickets (default 1000)")
    sample.add_argument("--out", type=Path, required=True, help=".jsonl, .csv or .parquet")
    sample.add_argument("--seed", type=int, default=42)
    sample.set_defaults(handler=run_sample)

    train = commands.add_parser("train", help="train a model on a labelled file and register it")
    _data_arguments(train)
    train.add_argument("--test-size", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--c", type=float, default=10.0, help="LogisticRegression C")
    train.add_argument("--no-promote", action="store_true", help="do not make it current")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a registered model on a file")
    _data_arguments(evaluate)
    evaluate.add_argument("--version", help="model version (default: current)")
    evaluate.add_argument("--json", action="store_true", help="print metrics as JSON")
    evaluate.set_defaults(handler=run_evaluate)


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="CSV, JSONL or Parquet file")
    parser.add_argument(
        "--target",
        action="append",
        help="label column(s) to learn (repeatable; default: queue)",
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="column mapping, e.g. --map body=Document --map ticket_id=id",
    )
    parser.add_argument("--limit", type=int, help="use only the first N rows")


def _load(args: argparse.Namespace, settings: Settings) -> Any:
    from models.datasets import ColumnMapping, load_labeled

    targets = args.target or ["queue"]
    data = load_labeled(
        args.data,
        targets=targets,
        mapping=ColumnMapping.parse(args.map),
        limits=settings.field_limits,
        limit=args.limit,
    )
    for row, reason in data.skipped[:20]:
        logger.warning("skipped row %d: %s", row, reason)
    if data.skipped:
        logger.warning("skipped %d rows in total", len(data.skipped))
    return data


def _encoder(settings: Settings, model_name: str | None = None) -> Any:
    from models.embedding import SentenceTransformerEncoder

    return SentenceTransformerEncoder(
        model_name or settings.embedding_model,
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
    )


def run_sample(args: argparse.Namespace, settings: Settings) -> int:
    from models.sample import generate_tickets, write_tickets

    path = write_tickets(generate_tickets(args.n, seed=args.seed), args.out)
    print(f"wrote {args.n} tickets to {path}")
    return 0


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from batch.evaluate import format_report
    from batch.train import train
    from models.registry import ModelRegistry

    data = _load(args, settings)
    result = train(
        data,
        encoder=_encoder(settings),
        registry=ModelRegistry(settings.model_registry_dir),
        max_text_chars=settings.max_text_chars,
        test_size=args.test_size,
        seed=args.seed,
        c=args.c,
        data_path=args.data,
        make_current=not args.no_promote,
    )
    print(format_report(result.metrics))
    print(f"registered model {result.version} at {result.path}")
    return 0


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from batch.evaluate import evaluate_classifier, format_report
    from models.registry import ModelRegistry
    from models.text import build_texts

    registry = ModelRegistry(settings.model_registry_dir)
    version = args.version or registry.current_version()
    if version is None:
        raise SystemExit("no current model: run ticketflow train first")
    metadata = registry.metadata(version)
    encoder = _encoder(settings, metadata.embedding_model)
    model = registry.load(
        version, expect_embedding_model=encoder.name, expect_dimension=encoder.dimension
    )
    if not args.target:
        args.target = metadata.targets
    data = _load(args, settings)
    vectors = encoder.encode(
        build_texts(data.tickets, max_chars=metadata.max_text_chars), show_progress=True
    )
    metrics = evaluate_classifier(model.classifier, vectors, data.labels)
    print(json.dumps(metrics, indent=2) if args.json else format_report(metrics))
    return 0
