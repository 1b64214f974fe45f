"""Stream commands: broker, topics, worker, produce, consume."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ticketflow.config import Settings

logger = logging.getLogger(__name__)


def register(commands: Any) -> None:
    broker = commands.add_parser("broker", help="the local single-node Kafka (no Docker needed)")
    broker.add_argument("action", choices=["up", "down", "status"])
    broker.set_defaults(handler=run_broker)

    topics = commands.add_parser("topics", help="create the tickets/labeled/dead-letter topics")
    topics.add_argument("action", choices=["create"])
    topics.add_argument("--partitions", type=int, help="default: KAFKA_TOPIC_PARTITIONS")
    topics.set_defaults(handler=run_topics)

    worker = commands.add_parser("worker", help="run the labelling worker (Faust)")
    worker.add_argument("--no-create-topics", action="store_true")
    worker.set_defaults(handler=run_worker)

    produce = commands.add_parser("produce", help="publish tickets from a file or the generator")
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument("path", nargs="?", type=Path, help="JSONL or CSV (Parquet too)")
    source.add_argument("--sample", type=int, metavar="N", help="publish N generated tickets")
    produce.add_argument("--seed", type=int, default=7, help="generator seed for --sample")
    produce.add_argument(
        "--rate", type=float, help="tickets per second (default: as fast as possible)"
    )
    produce.add_argument("--topic", help="default: KAFKA_TOPIC_TICKETS")
    produce.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN")
    produce.set_defaults(handler=run_produce)

    consume = commands.add_parser("consume", help="print records of a topic, one JSON per line")
    consume.add_argument("--topic", help="default: KAFKA_TOPIC_LABELED")
    consume.add_argument("--max", type=int, help="stop after N records")
    consume.add_argument("--timeout", type=float, default=10.0, help="stop after S idle seconds")
    consume.add_argument("--group", help="consumer group (default: a fresh one)")
    consume.set_defaults(handler=run_consume)

    feedback = commands.add_parser(
        "feedback", help="publish an agent's corrected label(s) for one ticket"
    )
    feedback.add_argument("ticket_id", metavar="TICKET_ID")
    feedback.add_argument("--queue", help="the corrected queue")
    feedback.add_argument("--priority", help="the corrected priority")
    feedback.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="TARGET=LABEL",
        help="a corrected label of any target (repeatable)",
    )
    feedback.add_argument("--by", help="who corrected it (default: $USER)")
    feedback.add_argument("--comment")
    feedback.set_defaults(handler=run_feedback)

    monitor = commands.add_parser("monitor", help="run the drift monitor (windows + Evidently)")
    monitor.add_argument("--no-create-topics", action="store_true")
    monitor.set_defaults(handler=run_monitor)

    drift = commands.add_parser("drift", help="drift reference sets and Evidently reports")
    drift_commands = drift.add_subparsers(dest="drift_command", required=True)
    reference = drift_commands.add_parser(
        "reference", help="build the reference set of a model from a ticket file"
    )
    reference.add_argument("--data", type=Path, required=True, help="JSONL, CSV or Parquet")
    reference.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN")
    reference.add_argument("--limit", type=int, help="use only the first N rows")
    reference.add_argument("--version", help="model version (default: MODEL_VERSION or current)")
    reference.add_argument("--seed", type=int, default=42)
    reference.set_defaults(handler=run_drift_reference)
    report = drift_commands.add_parser(
        "report", help="write an Evidently HTML report of recent tickets vs the reference"
    )
    report.add_argument(
        "--window", type=int, help="the last N monitor records (default: DRIFT_WINDOW_SIZE)"
    )
    report.add_argument("--input", type=Path, help="read monitor records from this JSONL file")
    report.add_argument("--out", type=Path, help="HTML path (default: under DRIFT_REPORT_DIR)")
    report.set_defaults(handler=run_drift_report)


def local_broker(settings: Settings) -> Any:
    from ticketflow.devtools.kafka.local_broker import LocalKafkaBroker

    return LocalKafkaBroker(
        version=settings.local_kafka_version,
        cache_dir=settings.cache_dir,
        state_dir=settings.state_dir,
        port=settings.local_kafka_port,
        controller_port=settings.local_kafka_controller_port,
        heap=settings.local_kafka_heap,
    )


def run_broker(args: argparse.Namespace, settings: Settings) -> int:
    if settings.kafka_bootstrap_servers:
        print(
            f"KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} is set: "
            "using that cluster, no local broker is managed"
        )
        return 0
    broker = local_broker(settings)
    status = {"up": broker.up, "down": broker.down, "status": broker.status}[args.action]()
    state = "running" if status.running else "stopped"
    print(f"kafka {state} at {status.bootstrap} (pid {status.pid}, data {status.data_dir})")
    print(f"log: {status.log_file}")
    return 0 if status.running or args.action == "down" else 3


def create_all_topics(settings: Settings, partitions: int | None = None) -> dict[str, str]:
    from ticketflow.adapters.kafka.topics import create_topics

    created = create_topics(
        settings.kafka_client_config(),
        [
            settings.kafka_topic_tickets,
            settings.kafka_topic_labeled,
            settings.kafka_topic_dlq,
            *([settings.kafka_topic_monitor] if settings.monitor_enabled else []),
            *([settings.kafka_topic_feedback] if settings.feedback_enabled else []),
        ],
        partitions=partitions or settings.kafka_topic_partitions,
        replication=settings.kafka_topic_replication,
    )
    # One partition: announcements are read in the order they were made.
    created.update(
        create_topics(
            settings.kafka_client_config(),
            [settings.kafka_topic_model_updates],
            partitions=1,
            replication=settings.kafka_topic_replication,
        )
    )
    return created


def run_topics(args: argparse.Namespace, settings: Settings) -> int:
    for name, outcome in create_all_topics(settings, args.partitions).items():
        print(f"{name}: {outcome}")
    return 0


def skip_unused_imports() -> None:
    """Keep pandas out of the worker process: scikit-learn imports it whenever it is
    installed (sklearn.utils.fixes) and the worker never uses it; it was 1.5-2 s of a 10 s
    cold start. A ``None`` entry in ``sys.modules`` makes ``import pandas`` raise
    ImportError, which scikit-learn takes for "not installed". Call before the imports."""
    if "pandas" not in sys.modules:
        sys.modules["pandas"] = None  # type: ignore[assignment]


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    skip_unused_imports()
    import faust

    from ticketflow.stream.app import create_app

    if not args.no_create_topics:
        create_all_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.adapters.kafka.clients import produce_events, produce_file
    from ticketflow.devtools.sample import generate_tickets
    from ticketflow.models.datasets import ColumnMapping

    topic = args.topic or settings.kafka_topic_tickets
    config = settings.kafka_client_config()
    if args.sample:
        sent = produce_events(
            config, topic, generate_tickets(args.sample, seed=args.seed), rate=args.rate
        )
        print(f"published {sent} generated tickets to {topic}")
        return 0
    report = produce_file(
        config,
        topic,
        args.path,
        mapping=ColumnMapping.parse(args.map),
        rate=args.rate,
        # Rows the worker would dead-letter for size are reported here with their line number.
        max_bytes=settings.kafka_max_message_bytes,
    )
    for line, reason in report.skipped:
        print(f"{args.path}:{line}: skipped: {reason}", file=sys.stderr)
    print(f"published {report.sent} tickets to {topic}; skipped {len(report.skipped)}")
    return 0 if not report.skipped else 2


def run_consume(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.adapters.kafka.clients import consume

    topic = args.topic or settings.kafka_topic_labeled
    for record in consume(
        settings.kafka_client_config(),
        topic,
        max_messages=args.max,
        timeout_s=args.timeout,
        group_id=args.group,
    ):
        print(json.dumps(record, ensure_ascii=False), flush=True)
    return 0


def run_feedback(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from ticketflow.adapters.kafka.clients import produce_raw
    from ticketflow.schemas import LabelFeedback

    labels: dict[str, str] = {}
    for item in args.label:
        target, sep, label = item.partition("=")
        if not sep:
            raise SystemExit(f"--label {item!r}: expected TARGET=LABEL")
        labels[target.strip()] = label.strip()
    if args.queue:
        labels["queue"] = args.queue
    if args.priority:
        labels["priority"] = args.priority
    if not labels:
        raise SystemExit("nothing to correct: give --queue, --priority or --label TARGET=LABEL")
    event = LabelFeedback(
        ticket_id=args.ticket_id,
        labels=labels,
        corrected_by=args.by or getpass.getuser(),
        comment=args.comment,
    )
    produce_raw(
        settings.kafka_client_config(),
        settings.kafka_topic_feedback,
        [(event.ticket_id.encode("utf-8"), event.model_dump_json().encode("utf-8"))],
    )
    print(f"feedback for {event.ticket_id}: {labels} -> {settings.kafka_topic_feedback}")
    return 0


def _drift_config(settings: Settings) -> Any:
    from ticketflow.monitoring.drift import DriftConfig

    return DriftConfig(
        embedding_method=settings.drift_embedding_method,
        embedding_threshold=settings.drift_embedding_threshold,
        p_value=settings.drift_p_value,
        share_threshold=settings.drift_share_threshold,
    )


def run_monitor(args: argparse.Namespace, settings: Settings) -> int:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from prometheus_client import start_http_server

    from ticketflow.adapters.kafka.topics import create_topics
    from ticketflow.monitoring.drift_metrics import MonitorMetrics
    from ticketflow.monitoring.monitor import (
        DriftMonitor,
        install_stop_handlers,
        reference_loader,
        run_monitor_loop,
    )
    from ticketflow.monitoring.report import ReportLimiter

    logging.getLogger().setLevel(settings.log_level)
    config = settings.kafka_client_config()
    if not args.no_create_topics:
        create_topics(
            config,
            [settings.kafka_topic_monitor, settings.kafka_topic_drift],
            partitions=settings.kafka_topic_partitions,
            replication=settings.kafka_topic_replication,
        )
    import evidently.metrics.embeddings  # noqa: F401  (slow first import: not on the first window)

    metrics = MonitorMetrics()
    start_http_server(
        settings.monitor_metrics_port, addr=settings.metrics_bind, registry=metrics.registry
    )
    stop = threading.Event()
    install_stop_handlers(stop)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evidently-report") as reporter:
        monitor = DriftMonitor(
            references=reference_loader(settings.drift_reference_dir),
            metrics=metrics,
            publish=lambda key, value: None,  # replaced by the loop's producer
            config=_drift_config(settings),
            window_size=settings.drift_window_size,
            window_seconds=settings.drift_window_seconds,
            min_window=settings.drift_min_window,
            report_dir=settings.drift_report_dir,
            report_limiter=ReportLimiter(settings.drift_report_min_interval_s),
            reporter=reporter,
        )
        logger.info(
            "monitor: %s -> windows of %d tickets / %.0fs -> %s; metrics on :%d",
            settings.kafka_topic_monitor,
            settings.drift_window_size,
            settings.drift_window_seconds,
            settings.kafka_topic_drift,
            settings.monitor_metrics_port,
        )
        run_monitor_loop(
            monitor,
            {
                **config,
                "group.id": settings.monitor_app_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": "true",
            },
            config,
            topic=settings.kafka_topic_monitor,
            drift_topic=settings.kafka_topic_drift,
            stop=stop,
        )
    return 0


def run_drift_reference(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from ticketflow.models.datasets import ColumnMapping, read_table, rows_to_dicts
    from ticketflow.models.registry import ModelRegistry
    from ticketflow.monitoring.reference import write_sample_reference
    from ticketflow.monitoring.sample import pipeline_sample
    from ticketflow.schemas import Ticket
    from ticketflow.stream.runtime import make_pipeline, serving_encoders

    registry = ModelRegistry(settings.model_registry_dir)
    model = registry.load(args.version or settings.model_version)
    frame = read_table(args.data)
    if args.limit is not None:
        frame = frame.head(args.limit)
    tickets = []
    for row in rows_to_dicts(frame, ColumnMapping.parse(args.map), id_prefix=args.data.stem):
        try:
            tickets.append(Ticket.model_validate(row, context={"limits": settings.field_limits}))
        except ValidationError:
            continue
    if not tickets:
        print(f"{args.data}: no valid tickets", file=sys.stderr)
        return 2
    # Exactly the worker's encoders and pipeline, so the reference vectors live in the space
    # the worker publishes (a cascade's static vectors).
    pipeline = make_pipeline(serving_encoders(settings, model.metadata, text_cache=False), model)
    path = write_sample_reference(
        settings.drift_reference_dir,
        model_version=model.metadata.version,
        sample=pipeline_sample(pipeline, tickets, review_threshold=settings.review_threshold),
        sample_size=settings.drift_reference_size,
        seed=args.seed,
    )
    print(f"reference of model {model.metadata.version}: {len(tickets)} tickets -> {path}")
    return 0


def _latest_monitor_records(settings: Settings, count: int) -> list[Any]:
    from confluent_kafka import Consumer, TopicPartition

    from ticketflow.schemas import MonitorRecord

    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"{settings.monitor_app_id}-report",
            "enable.auto.commit": "false",
        }
    )
    try:
        topic = settings.kafka_topic_monitor
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions) if topic in metadata.topics else []
        assignment = []
        remaining = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            start = max(low, high - count)
            remaining += high - start
            assignment.append(TopicPartition(topic, partition, start))
        consumer.assign(assignment)
        records = []
        while remaining > 0:
            messages = consumer.consume(num_messages=500, timeout=5.0)
            if not messages:
                break
            for message in messages:
                remaining -= 1
                if not message.error():
                    records.append(MonitorRecord.model_validate_json(message.value() or b""))
    finally:
        consumer.close()
    records.sort(key=lambda r: r.processed_time)
    return records[-count:]


def run_drift_report(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.monitoring.drift import detect_drift
    from ticketflow.monitoring.reference import load_reference
    from ticketflow.monitoring.report import report_path, write_report
    from ticketflow.monitoring.sample import records_sample
    from ticketflow.schemas import MonitorRecord

    count = args.window or settings.drift_window_size
    if args.input:
        lines = args.input.read_text(encoding="utf-8").splitlines()
        records = [MonitorRecord.model_validate_json(x) for x in lines if x.strip()][-count:]
    else:
        records = _latest_monitor_records(settings, count)
    if not records:
        print("no monitor records to report on", file=sys.stderr)
        return 2
    version = records[-1].model_version
    records = [r for r in records if r.model_version == version]
    reference = load_reference(settings.drift_reference_dir, version)
    current = records_sample(records)
    config = _drift_config(settings)
    result = detect_drift(reference.sample, current, config)
    path = write_report(
        reference.sample,
        current,
        args.out or report_path(settings.drift_report_dir, version),
        model_version=version,
        reference_version=reference.reference_version,
        embedding_threshold=config.threshold,
    )
    for feature in result.features:
        flag = "DRIFT" if feature.drifted else "ok"
        print(f"{feature.feature:24} {feature.method:16} {feature.score:8.4f}  {flag}")
    print(f"{len(records)} records of model {version}: drifted={result.drifted}; report: {path}")
    return 0
