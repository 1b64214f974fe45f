"""Stream commands: broker, topics, worker, produce, consume."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from models.settings import Settings

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


def local_broker(settings: Settings) -> Any:
    from stream.kafka.local_broker import LocalKafkaBroker

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
    from stream.topics import create_topics

    return create_topics(
        settings.kafka_client_config(),
        [
            settings.kafka_topic_tickets,
            settings.kafka_topic_labeled,
            settings.kafka_topic_dlq,
            *([settings.kafka_topic_monitor] if settings.monitor_enabled else []),
        ],
        partitions=partitions or settings.kafka_topic_partitions,
        replication=settings.kafka_topic_replication,
    )


def run_topics(args: argparse.Namespace, settings: Settings) -> int:
    for name, outcome in create_all_topics(settings, args.partitions).items():
        print(f"{name}: {outcome}")
    return 0


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from stream.app import create_app

    if not args.no_create_topics:
        create_all_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    from models.datasets import ColumnMapping
    from models.sample import generate_tickets
    from stream.clients import produce_events, produce_file

    topic = args.topic or settings.kafka_topic_tickets
    config = settings.kafka_client_config()
    if args.sample:
        sent = produce_events(
            config, topic, generate_tickets(args.sample, seed=args.seed), rate=args.rate
        )
        print(f"published {sent} generated tickets to {topic}")
        return 0
    report = produce_file(
        config, topic, args.path, mapping=ColumnMapping.parse(args.map), rate=args.rate
    )
    for line, reason in report.skipped:
        print(f"{args.path}:{line}: skipped: {reason}", file=sys.stderr)
    print(f"published {report.sent} tickets to {topic}; skipped {len(report.skipped)}")
    return 0 if not report.skipped else 2


def run_consume(args: argparse.Namespace, settings: Settings) -> int:
    from stream.clients import consume

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
