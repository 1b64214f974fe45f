"""``ticketflow train|evaluate|experiments``: fit, score and compare models on labelled files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path

from ticketflow.cli._checks import open_registry
from ticketflow.cli._recipe import add_cv_arguments, with_cv_options
from ticketflow.cli._types import Commands, add_encoding_argument, add_map_argument
from ticketflow.cli._values import COUNT, POSITIVE, SEED, number, setting
from ticketflow.cli.models import announce
from ticketflow.config import Settings
from ticketflow.models.finetune import FinetuneConfig  # no torch at import: --help stays fast

logger = logging.getLogger(__name__)

FINETUNE_EPOCHS = FinetuneConfig().epochs

# What train's report abbreviates, printed once under it (docs/model-quality.md has more).
TRAIN_LEGEND = """\
legend: ECE = expected calibration error, the gap between confidence and accuracy (0 is best)
        auto-route p>=X = share of test tickets a cut reaching precision X routes without a person
        baseline = always the training part's most frequent class
        config: bal = balanced class weights, +T = temperature-scaled probabilities,
        block weights = the embedding/word/char feature weights chosen by cross-validation"""


def register(commands: Commands) -> None:
    train = commands.add_parser("train", help="train a model on a labelled file and register it")
    _data_arguments(train)
    train.add_argument(
        "--test-size",
        type=number(float, gt=0, lt=1),
        default=0.2,
        help="share of the rows held out for the metrics, between 0 and 1 (default 0.2)",
    )
    train.add_argument("--seed", type=SEED, default=42)
    train.add_argument(
        "--c", type=POSITIVE, help="LogisticRegression C (default: the chosen model's)"
    )
    train.add_argument(
        "--features",
        choices=["hybrid", "embedding"],
        default="hybrid",
        help="hybrid: embedding + word and char TF-IDF (default); embedding: the vector alone",
    )
    train.add_argument("--no-calibrate", action="store_true", help="skip temperature scaling")
    add_cv_arguments(train)
    train.add_argument(
        "--review-precision",
        type=setting("review_precision"),
        help="precision the per-target review thresholds aim at (default REVIEW_PRECISION)",
    )
    train.add_argument("--no-promote", action="store_true", help="do not make it current")
    train.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune EMBEDDING_MODEL on the training part's labels first, then export and "
        "serve the fine-tuned encoder (needs the [train] extra; a GPU when present, else the "
        "CPU: 20 min per epoch of 3,200 tickets on 2 busy cores, docs/model-quality.md)",
    )
    train.add_argument(
        "--finetune-epochs",
        type=COUNT,
        default=FINETUNE_EPOCHS,
        help=f"epochs of fine-tuning (default {FINETUNE_EPOCHS}, the CV winner on bueck-v3)",
    )
    train.set_defaults(handler=run_train)

    experiments = commands.add_parser(
        "experiments",
        help="compare candidate models (and encoders) on the real data sets or on a labelled file",
        description="Compare the candidate models with a fixed protocol and write a markdown "
        "+ JSON table and plots (docs/model-quality.md): on bueck-v3 and endava-it by "
        "default, on any labelled file with --data; --encoder compares encoders on --data.",
    )
    experiments.add_argument(
        "--data",
        type=Path,
        help="a labelled CSV, JSONL or Parquet file: the protocol on it, from the majority "
        "class and TF-IDF baselines to the default model",
    )
    experiments.add_argument(
        "--target", action="append", help="label column(s) of --data (repeatable; default: queue)"
    )
    add_map_argument(experiments)
    add_encoding_argument(experiments)
    experiments.add_argument(
        "--rows",
        type=number(int, ge=0),
        default=5_000,
        help="stratified subsample of --data (0: every row; default 5000)",
    )
    experiments.add_argument(
        "--encoder",
        action="append",
        metavar="NAME",
        help="compare encoders on --data instead (repeatable): torch, onnx, onnx-int8, static, "
        "all (the four), or a local model directory or installed package that ships one",
    )
    experiments.add_argument(
        "--encoder-rows",
        type=number(int, ge=0),
        default=1_000,
        help="stratified sample of --data the encoders are compared on (default 1000)",
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
    experiments.add_argument(
        "--folds", type=number(int, ge=2), default=5, help="CV folds on the training part"
    )
    experiments.add_argument(
        "--endava-rows",
        type=COUNT,
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

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a registered model on a file",
        description="Accuracy, macro-F1, per-class report, confusion matrix and coverage and "
        "precision at the model's review cuts, per target. ECE: the gap between confidence and "
        "accuracy (0 is perfectly calibrated); auto-route: the share of tickets a cut reaching "
        "that precision would route without a person.",
    )
    _data_arguments(evaluate, target_default="the model's targets")
    evaluate.add_argument("--version", help="model version (default: current)")
    evaluate.add_argument("--json", action="store_true", help="print metrics as JSON")
    evaluate.add_argument(
        "--predictions",
        type=Path,
        metavar="FILE",
        help="write one row per ticket: ticket_id and per target truth, prediction, "
        "probability, needs_review (CSV; JSON lines when FILE ends in .jsonl)",
    )
    evaluate.set_defaults(handler=run_evaluate)


def _data_arguments(parser: argparse.ArgumentParser, *, target_default: str = "queue") -> None:
    parser.add_argument("--data", type=Path, required=True, help="CSV, JSONL or Parquet file")
    parser.add_argument(
        "--target",
        action="append",
        help=f"label column(s) (repeatable; default: {target_default})",
    )
    add_map_argument(parser)
    add_encoding_argument(parser)
    parser.add_argument("--limit", type=COUNT, help="use only the first N rows")


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import configured
    from ticketflow.batch.evaluate import format_report, format_review
    from ticketflow.batch.train import TrainRequest, train
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.models.recipe import EMBEDDING_LR, ModelConfig
    from ticketflow.models.registry import ModelRegistry
    from ticketflow.monitoring.reference import ReferenceSpec

    mapping = ColumnMapping.parse(args.map)
    data = configured.load_data(
        settings,
        args.data,
        targets=args.target or ["queue"],
        mapping=mapping,
        limit=args.limit,
        encoding=args.encoding,
        # A row missing one target's label still trains the others; fine-tuning the encoder
        # learns from every target of a row at once, so it keeps the fully labelled rows.
        partial=not args.finetune,
    )
    config = ModelConfig() if args.features == "hybrid" else EMBEDDING_LR
    config = replace(config, calibrate=config.calibrate and not args.no_calibrate)
    if args.c is not None:
        config = replace(config, c=args.c)
    config = with_cv_options(config, args)
    registry = ModelRegistry(settings.model_registry_dir)
    # No retrain or promotion may move the current pointer while this model is trained.
    with registry.lock():
        model_name: str | None = None
        if args.finetune:
            tuned = configured.finetuned_encoder(
                settings,
                data,
                test_size=args.test_size,
                seed=args.seed,
                config=FinetuneConfig(
                    epochs=args.finetune_epochs,
                    max_tokens=settings.embedding_max_tokens or 256,
                ),
            )
            model_name = str(tuned.directory)
            print(
                f"fine-tuned {settings.embedding_model} into {tuned.directory} "
                f"({'reused' if tuned.reused else f'{tuned.seconds:.0f}s on {tuned.device}'})"
            )
        review = settings.review_policy()
        if args.review_precision is not None:
            review = replace(review, precision=args.review_precision)
        result = train(
            TrainRequest(
                data,
                max_text_chars=settings.max_text_chars,
                data_path=args.data,
                test_size=args.test_size,
                seed=args.seed,
                config=config,
                cascade_agreement=settings.cascade_agreement,
                cascade_escalate=settings.cascade_escalate,
                limit=args.limit,
                column_mapping=asdict(mapping),
            ),
            encoder=configured.encoder(settings, model_name),
            registry=registry,
            review=review,
            static_encoder=(
                configured.static_encoder(settings, model_name) if settings.cascade else None
            ),
            reference=ReferenceSpec(settings.drift_reference_dir, settings.drift_reference_size),
            make_current=not args.no_promote,
        )
        if result.promotion is not None:
            from ticketflow.batch.promotion import model_update

            # Under the lock, as promote announces: announcements follow the pointer's order.
            update = model_update(registry, result.promotion)
            if announce(settings, update):
                print(f"announced {update.version} (was {update.previous_version})")
    print(format_report(result.metrics))
    if result.review is not None:
        print(format_review(result.review))
    if result.seconds:
        print(
            f"{config.name}: embedding {result.seconds['embed']:.1f}s, "
            f"fit {result.seconds['fit']:.1f}s"
        )
    print(TRAIN_LEGEND)
    for figure in sorted(result.path.glob("confusion-*.png")):
        print(f"confusion matrix: {figure}")
    for note in result.notes:
        print(f"WARNING {note}")
    print(f"registered model {result.version} at {result.path}")
    if settings.mlflow_tracking_uri:  # imported only then: the module reaches for mlflow
        from ticketflow.batch import tracking

        run_id = tracking.log_version(
            tracking.Tracking.from_settings(settings),
            registry,
            result.version,
            command="train",
            current=result.promotion is not None,
        )
        if run_id is not None:
            print(f"MLflow run {run_id} at {settings.mlflow_tracking_uri}")
    return 0


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import configured, evaluate
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.models.review import ReviewPolicy
    from ticketflow.models.text import build_texts

    registry = open_registry(settings)
    version = args.version or registry.current_version()
    if version is None:
        raise SystemExit("no current model: run ticketflow train first")
    metadata = registry.metadata(version)
    # The file first: a wrong path or column fails before the encoder is loaded.
    data = configured.load_data(
        settings,
        args.data,
        targets=args.target or metadata.targets or ["queue"],
        mapping=ColumnMapping.parse(args.map),
        limit=args.limit,
        encoding=args.encoding,
    )
    encoder = configured.encoder(
        settings,
        metadata.embedding_model,
        backend=metadata.embedding_backend,
        max_tokens=metadata.embedding_max_tokens,
    )
    model = registry.load(
        version, expect_embedding_model=encoder.name, expect_dimension=encoder.dimension
    )
    texts = build_texts(data.tickets, max_chars=metadata.max_text_chars)
    vectors = encoder.encode(texts, show_progress=True)
    static = None
    if metadata.static_model:
        static = configured.static_encoder(settings, metadata.embedding_model).encode(texts)
    predictions = evaluate.predict_rows(model.classifier, vectors, texts, static)
    metrics = evaluate.evaluate_predictions(model.classifier, predictions, data.labels)
    # The cuts the worker would serve this model with: its own, the setting where it has none.
    cuts = ReviewPolicy(threshold=settings.review_threshold).cuts(model.classifier)
    routed = evaluate.at_cuts(predictions, data.labels, cuts)
    for target, r in routed.items():
        metrics[target]["at_cut"] = {
            "threshold": r.threshold,
            **(r.test.model_dump() if r.test else {}),
        }
    written = ""
    if args.predictions is not None:
        records = evaluate.prediction_records(
            [t.ticket_id for t in data.tickets], predictions, data.labels, cuts
        )
        evaluate.write_predictions(args.predictions, records)
        written = f"wrote {len(records)} predictions to {args.predictions}"
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(evaluate.format_report(metrics))
        print(evaluate.format_confusion(metrics))
        print(evaluate.format_cuts(routed))
    if written:
        # On stderr under --json, so that stdout stays one JSON document.
        print(written, file=sys.stderr if args.json else sys.stdout)
    return 0


def run_experiments(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import configured, experiments
    from ticketflow.batch.embedding_cache import CachedEncoder

    if args.data is not None or args.encoder:
        return _run_file_experiments(args, settings)
    datasets = args.datasets or experiments.default_datasets_dir()
    missing = [t.file for t in experiments.TASKS if not (datasets / t.file).is_file()]
    if missing:
        print(
            f"skipping experiments: {datasets} does not hold {', '.join(missing)} "
            "(the evaluation data sets live outside the repository; see docs/model-quality.md)"
        )
        return 0
    # The reference backend: the cache is keyed by model name, and the table compares models.
    bare = configured.encoder(settings, backend="torch", max_tokens=None)
    encoder = CachedEncoder(bare, args.cache_dir or settings.cache_dir / "embeddings")
    if args.quick:
        rows = {"bueck-v3": 600, "endava-it": 600}
        request = experiments.ExperimentRequest(
            candidates=tuple(experiments.quick_candidates()),
            folds=3,
            max_text_chars=settings.max_text_chars,
            rows=rows,
            targets={"bueck-v3": ["queue"]},
        )
        report = experiments.run_experiments(datasets, encoder, request, out_dir=args.out)
    else:
        request = experiments.ExperimentRequest(
            folds=args.folds,
            max_text_chars=settings.max_text_chars,
            rows={"endava-it": args.endava_rows},
        )
        report = experiments.run_experiments(
            datasets, encoder, request, out_dir=args.out, cost_encoder=bare
        )
    print(experiments.markdown(report))
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    track_experiments(settings, args, args.out / "results.json")
    return 0


def _run_file_experiments(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import configured, experiments
    from ticketflow.batch.embedding_cache import CachedEncoder
    from ticketflow.cli._checks import UsageError
    from ticketflow.data.errors import InputError

    if args.data is None:
        raise UsageError("--encoder compares encoders on a labelled file: add --data PATH")
    if not args.data.is_file():  # before an encoder is loaded, which takes seconds
        raise InputError(f"cannot read {args.data}: no such file")
    task = experiments.file_task(
        args.data, args.target or ["queue"], args.map, encoding=args.encoding
    )
    if args.encoder:
        request = experiments.ExperimentRequest(
            folds=args.folds,
            max_text_chars=settings.max_text_chars,
            rows={task.name: args.encoder_rows} if args.encoder_rows else {},
            min_class_rows=experiments.MIN_CLASS_ROWS,
        )
        report = experiments.compare_encoders(
            task, experiments.encoder_choices(args.encoder, settings), request, out_dir=args.out
        )
        print(experiments.encoders_markdown(report))
        print(f"wrote {args.out / 'encoders.md'} and {args.out / 'encoders.json'}")
        track_experiments(settings, args, args.out / "encoders.json")
        return 0
    # The reference backend, cached by model name, as for the shared data sets.
    bare = configured.encoder(settings, backend="torch", max_tokens=None)
    encoder = CachedEncoder(bare, args.cache_dir or settings.cache_dir / "embeddings")
    rows = 600 if args.quick else args.rows or None
    request = experiments.ExperimentRequest(
        candidates=tuple(
            experiments.quick_candidates() if args.quick else experiments.file_candidates()
        ),
        folds=3 if args.quick else args.folds,
        max_text_chars=settings.max_text_chars,
        rows={task.name: rows} if rows else {},
        min_class_rows=experiments.MIN_CLASS_ROWS,
    )
    report = experiments.run_experiments(Path(), encoder, request, out_dir=args.out, tasks=[task])
    print(experiments.markdown(report))
    print(f"wrote {args.out / 'results.md'}, {args.out / 'results.json'} and the plots")
    track_experiments(settings, args, args.out / "results.json")
    return 0


def track_experiments(settings: Settings, args: argparse.Namespace, results: Path) -> None:
    """With MLFLOW_TRACKING_URI: the run's numbers (every finite one of ``results``), its
    options and every file it wrote, as an MLflow run."""
    if not settings.mlflow_tracking_uri:
        return
    import json

    from ticketflow.batch import tracking

    numbers = tracking.flat_metrics(json.loads(results.read_text(encoding="utf-8")))
    options = {k: str(v) for k, v in vars(args).items() if v is not None and not callable(v)}
    run_id = tracking.log_experiment(
        tracking.Tracking.from_settings(settings),
        name=f"experiments {results.parent.name}",
        params=options,
        metrics=numbers,
        artifacts=sorted(p for p in results.parent.iterdir() if p.is_file()),
    )
    if run_id is not None:
        print(f"MLflow run {run_id} at {settings.mlflow_tracking_uri}")
