"""Batch commands: sample, train, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ticketflow.config import Settings

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
    train.add_argument("--c", type=float, help="LogisticRegression C (default: the chosen model's)")
    train.add_argument(
        "--features",
        choices=["hybrid", "embedding"],
        default="hybrid",
        help="hybrid: embedding + word and char TF-IDF (default); embedding: the vector alone",
    )
    train.add_argument("--no-calibrate", action="store_true", help="skip temperature scaling")
    train.add_argument(
        "--review-precision",
        type=float,
        help="precision the per-target review thresholds aim at (default REVIEW_PRECISION)",
    )
    train.add_argument("--no-promote", action="store_true", help="do not make it current")
    train.set_defaults(handler=run_train)

    experiments = commands.add_parser(
        "experiments",
        help="compare candidate models on the real data sets (../shared/datasets)",
        description="Compare the candidate models on bueck-v3 and endava-it with a fixed "
        "protocol and write a markdown + JSON table (docs/model-quality.md).",
    )
    experiments.add_argument(
        "--datasets",
        type=Path,
        help="folder holding bueck-v3/ and endava-it/ (default: ../shared/datasets "
        "next to the repository)",
    )
    experiments.add_argument(
        "--out", type=Path, default=Path("reports/experiments"), help="output folder"
    )
    experiments.add_argument("--folds", type=int, default=5, help="CV folds on the training part")
    experiments.add_argument(
        "--endava-rows",
        type=int,
        default=8_000,
        help="stratified subsample of endava-it (embedding all 38k rows takes long on a CPU)",
    )
    experiments.add_argument(
        "--quick",
        action="store_true",
        help="small fast subset: baselines + the default model, 3 folds, few rows",
    )
    experiments.add_argument(
        "--cache-dir",
        type=Path,
        help="embedding cache (default: CACHE_DIR/embeddings)",
    )
    experiments.set_defaults(handler=run_experiments)

    retrain = commands.add_parser(
        "retrain",
        help="challenger from the stored vectors + labels; promote it only when it is better",
        description="Train a challenger on the vectors, documents and labels in ChromaDB "
        "(human corrections first), compare it with the current model on held-out human "
        "labels, register it, write a report and promote + announce it only when it wins.",
    )
    retrain.add_argument(
        "--eval-file",
        type=Path,
        help="fixed evaluation set: ticket_id + one column per target (JSONL/CSV/Parquet); "
        "the tickets must be in the store, they are never trained on",
    )
    retrain.add_argument(
        "--if-drift",
        action="store_true",
        help="run only when a drift event arrived since the last promotion",
    )
    retrain.add_argument("--force", action="store_true", help="promote even if it loses")
    retrain.add_argument("--no-promote", action="store_true", help="evaluate and register only")
    retrain.add_argument("--c", type=float, help="LogisticRegression C (default: train's)")
    retrain.add_argument(
        "--features",
        choices=["hybrid", "embedding"],
        default="hybrid",
        help="as for train: hybrid (default) or the embedding alone",
    )
    retrain.add_argument("--seed", type=int, default=42)
    retrain.add_argument("--by", help="recorded as who promoted (default: $USER)")
    retrain.set_defaults(handler=run_retrain)

    models = commands.add_parser("models", help="list, promote or roll back registered models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    models_commands.add_parser("list", help="versions (current marked *) and the history")
    promote = models_commands.add_parser("promote", help="make VERSION current and announce it")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--reason", default="manual promotion")
    promote.add_argument("--by", help="default: $USER")
    rollback = models_commands.add_parser(
        "rollback", help="back to the previous champion, announced"
    )
    rollback.add_argument("--reason", default="manual rollback")
    rollback.add_argument("--by", help="default: $USER")
    models.set_defaults(handler=run_models)

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
    from ticketflow.models.datasets import ColumnMapping, load_labeled

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


FROM_SETTINGS = -1  # _encoder(max_tokens=...): EMBEDDING_MAX_TOKENS


def _encoder(
    settings: Settings,
    model_name: str | None = None,
    *,
    backend: str | None = None,
    max_tokens: int | None = FROM_SETTINGS,
) -> Any:
    """The encoder of ``backend`` (default EMBEDDING_BACKEND); ONNX exports are made once
    and kept next to the models (``MODEL_REGISTRY_DIR/encoders``)."""
    from ticketflow.models.encoders import encoders_root, load_encoder

    return load_encoder(
        model_name or settings.embedding_model,
        backend or settings.embedding_backend,  # type: ignore[arg-type]
        export_root=encoders_root(settings.model_registry_dir),
        device=settings.embedding_device,
        batch_size=settings.embedding_batch_size,
        threads=settings.torch_threads,
        cache_root=settings.cache_dir / "encoders",
        max_tokens=settings.embedding_max_tokens if max_tokens == FROM_SETTINGS else max_tokens,
    )


def _static_encoder(settings: Settings, model_name: str | None = None) -> Any:
    """The cascade's static model, distilled once from the transformer (``CASCADE=on``)."""
    from ticketflow.models.encoders import encoders_root
    from ticketflow.models.static_encoder import StaticEncoder, ensure_static

    source = model_name or settings.embedding_model
    directory = ensure_static(
        source,
        encoders_root(settings.model_registry_dir),
        cache_root=settings.cache_dir / "encoders",
    )
    return StaticEncoder(directory, source_model=source)


def run_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.devtools.sample import generate_tickets, write_tickets

    path = write_tickets(generate_tickets(args.n, seed=args.seed), args.out)
    print(f"wrote {args.n} tickets to {path}")
    return 0


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch.evaluate import format_report
    from ticketflow.batch.train import EMBEDDING_LR, ModelConfig, train
    from ticketflow.models.registry import ModelRegistry

    data = _load(args, settings)
    config = ModelConfig() if args.features == "hybrid" else EMBEDDING_LR
    config = replace(config, calibrate=config.calibrate and not args.no_calibrate)
    if args.c is not None:
        config = replace(config, c=args.c)
    result = train(
        data,
        encoder=_encoder(settings),
        static_encoder=_static_encoder(settings) if settings.cascade else None,
        cascade_agreement=settings.cascade_agreement,
        registry=ModelRegistry(settings.model_registry_dir),
        max_text_chars=settings.max_text_chars,
        test_size=args.test_size,
        seed=args.seed,
        config=config,
        review_precision=(
            args.review_precision
            if args.review_precision is not None
            else settings.review_precision
        ),
        data_path=args.data,
        make_current=not args.no_promote,
        reference_dir=settings.drift_reference_dir,
        reference_size=settings.drift_reference_size,
        review_threshold=settings.review_threshold,
    )
    print(format_report(result.metrics))
    if result.seconds:
        print(
            f"{config.name}: embedding {result.seconds['embed']:.1f}s, "
            f"fit {result.seconds['fit']:.1f}s"
        )
    print(f"registered model {result.version} at {result.path}")
    return 0


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch.evaluate import evaluate_classifier, format_report
    from ticketflow.models.registry import ModelRegistry
    from ticketflow.models.text import build_texts

    registry = ModelRegistry(settings.model_registry_dir)
    version = args.version or registry.current_version()
    if version is None:
        raise SystemExit("no current model: run ticketflow train first")
    metadata = registry.metadata(version)
    encoder = _encoder(
        settings,
        metadata.embedding_model,
        backend=metadata.embedding_backend,
        max_tokens=metadata.embedding_max_tokens,
    )
    model = registry.load(
        version, expect_embedding_model=encoder.name, expect_dimension=encoder.dimension
    )
    if not args.target:
        args.target = metadata.targets
    data = _load(args, settings)
    texts = build_texts(data.tickets, max_chars=metadata.max_text_chars)
    vectors = encoder.encode(texts, show_progress=True)
    static = None
    if metadata.static_model:
        static = _static_encoder(settings, metadata.embedding_model).encode(texts)
    metrics = evaluate_classifier(
        model.classifier, vectors, data.labels, texts=texts, static_vectors=static
    )
    print(json.dumps(metrics, indent=2) if args.json else format_report(metrics))
    return 0


def run_experiments(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import experiments
    from ticketflow.batch.embedding_cache import CachedEncoder

    datasets = args.datasets or experiments.default_datasets_dir()
    missing = [t.file for t in experiments.TASKS if not (datasets / t.file).is_file()]
    if missing:
        print(
            f"skipping experiments: {datasets} does not hold {', '.join(missing)} "
            "(the evaluation data sets live outside the repository; see docs/model-quality.md)"
        )
        return 0
    # The reference backend: the cache is keyed by model name, and the table compares models.
    bare = _encoder(settings, backend="torch", max_tokens=None)
    encoder = CachedEncoder(bare, args.cache_dir or settings.cache_dir / "embeddings")
    if args.quick:
        rows = {"bueck-v3": 600, "endava-it": 600}
        report = experiments.run_experiments(
            datasets,
            encoder,
            out_dir=args.out,
            candidates=experiments.quick_candidates(),
            folds=3,
            max_text_chars=settings.max_text_chars,
            rows=rows,
            targets={"bueck-v3": ["queue"]},
        )
    else:
        report = experiments.run_experiments(
            datasets,
            encoder,
            out_dir=args.out,
            folds=args.folds,
            max_text_chars=settings.max_text_chars,
            rows={"endava-it": args.endava_rows},
            cost_encoder=bare,
        )
    print(experiments.markdown(report))
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return 0


def _user(name: str | None) -> str:
    import getpass

    return name or getpass.getuser()


# CLI glue only: the retrain / models commands talk to Kafka and ChromaDB through stream's
# clients (imported lazily here); batch's library modules never import stream.


def _announcer(settings: Settings) -> Any:
    """Publish each ModelUpdate on model-updates (1 partition) and wait for the ack."""
    from ticketflow.adapters.kafka.clients import produce_raw
    from ticketflow.adapters.kafka.topics import create_topics
    from ticketflow.schemas import ModelUpdate

    config = settings.kafka_client_config()

    def announce(update: ModelUpdate) -> None:
        create_topics(
            config,
            [settings.kafka_topic_model_updates],
            partitions=1,
            replication=settings.kafka_topic_replication,
        )
        produce_raw(
            config,
            settings.kafka_topic_model_updates,
            [(update.version.encode("utf-8"), update.model_dump_json().encode("utf-8"))],
        )

    return announce


def drift_since(settings: Settings, since: Any, timeout_s: float = 5.0) -> list[Any]:
    """Drift events detected after ``since`` (read from the start of the drift topic)."""
    from ticketflow.adapters.kafka.clients import consume
    from ticketflow.schemas import DriftEvent

    events = []
    for record in consume(
        settings.kafka_client_config(),
        settings.kafka_topic_drift,
        max_messages=None,
        timeout_s=timeout_s,
    ):
        try:
            event = DriftEvent.model_validate(record)
        except ValueError:
            continue
        if event.detected_at > since:
            events.append(event)
    return events


def last_promotion(registry: Any) -> Any:
    current = registry.current_version()
    if current is None:
        return None
    for entry in reversed(registry.history()):
        if entry.version == current:
            return entry.at
    return registry.metadata(current).created_at


def run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.adapters.store import open_chroma_client
    from ticketflow.batch import promotion
    from ticketflow.batch.retrain import RetrainPolicy, load_eval_labels, read_store, retrain
    from ticketflow.batch.train import EMBEDDING_LR, ModelConfig
    from ticketflow.models.registry import ModelRegistry

    registry = ModelRegistry(settings.model_registry_dir)
    if args.if_drift:
        since = last_promotion(registry)
        if since is None:
            raise SystemExit("no current model: run ticketflow train first")
        events = drift_since(settings, since)
        if not events:
            print(f"no drift event since the last promotion ({since:%Y-%m-%d %H:%M:%S} UTC)")
            return 0
        print(f"{len(events)} drift event(s) since {since:%Y-%m-%d %H:%M:%S} UTC: retraining")
    client = open_chroma_client(
        host=settings.chroma_host,
        port=settings.chroma_port,
        path=settings.chroma_path,
        auth_token=(
            settings.chroma_auth_token.get_secret_value() if settings.chroma_auth_token else None
        ),
    )
    # get_collection, not get_or_create: retraining never declares a vector space itself.
    stored = read_store(client.get_collection(settings.chroma_collection))
    config = ModelConfig() if args.features == "hybrid" else EMBEDDING_LR
    if args.c is not None:
        config = replace(config, c=args.c)
    current = registry.current_version()
    targets = registry.metadata(current).targets if current else []
    eval_labels = load_eval_labels(args.eval_file, targets) if args.eval_file else None
    result = retrain(
        stored,
        registry=registry,
        policy=RetrainPolicy(
            use_predicted=settings.retrain_use_predicted,
            min_probability=settings.retrain_min_probability,
            holdout_fraction=settings.retrain_holdout_fraction,
            min_holdout=settings.retrain_min_holdout,
            margin=settings.retrain_margin,
            class_tolerance=settings.retrain_class_tolerance,
        ),
        config=config,
        review_precision=settings.review_precision,
        eval_labels=eval_labels,
        force=args.force,
        report_dir=settings.retrain_report_dir,
        seed=args.seed,
        source=f"chroma:{settings.chroma_collection}",
    )
    for reason in result.reasons:
        print(f"  {reason}")
    print(f"report: {result.markdown_path}")
    if result.promote and not args.no_promote:
        update = promotion.promote(
            registry,
            result.challenger,
            by=_user(args.by),
            reason=f"retrain {result.decision}: " + "; ".join(result.reasons),
            announce=_announcer(settings),
            forced=result.decision == "forced",
            report=str(result.json_path),
        )
        print(f"challenger {update.version}: {result.decision}, announced (was {result.champion})")
    else:
        print(
            f"challenger {result.challenger}: {result.decision}"
            f"{' (not promoted: --no-promote)' if result.promote else ''}; "
            f"{result.champion} stays current"
        )
    return 0


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import promotion
    from ticketflow.models.registry import ModelRegistry

    registry = ModelRegistry(settings.model_registry_dir)
    if args.models_command == "promote":
        update = promotion.promote(
            registry,
            args.version,
            by=_user(args.by),
            reason=args.reason,
            announce=_announcer(settings),
        )
        print(f"promoted {update.version} (was {update.previous_version}), announced")
        return 0
    if args.models_command == "rollback":
        update = promotion.rollback(
            registry, by=_user(args.by), reason=args.reason, announce=_announcer(settings)
        )
        print(f"rolled back {update.previous_version} -> {update.version}, announced")
        return 0
    current = registry.current_version()
    print(f"  {'version':<34} {'created (UTC)':<19} {'train':>6} {'macro-F1':>8}  config")
    for version in registry.versions():
        meta = registry.metadata(version)
        first = meta.metrics.get(meta.targets[0], {}) if meta.targets else {}
        f1 = first.get("macro_f1")
        shown = "–" if f1 is None else f"{f1:.3f}"
        print(
            f"{'*' if version == current else ' '} {version:<34} "
            f"{meta.created_at:%Y-%m-%d %H:%M:%S} {meta.n_train:>6} "
            f"{shown:>8}  {meta.training_config or ''}"
        )
    history = registry.history()
    if history:
        print("\nhistory (latest last):")
        for entry in history[-10:]:
            forced = " FORCED" if entry.forced else ""
            print(
                f"  {entry.at:%Y-%m-%d %H:%M:%S} {entry.action:<8} {entry.previous} -> "
                f"{entry.version} by {entry.by}{forced}: {entry.reason[:120]}"
            )
    return 0
