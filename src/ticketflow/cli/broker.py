"""``ticketflow broker`` and ``ticketflow topics``: the local broker and the topics."""

from __future__ import annotations

import argparse

from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.cli._checks import require_broker
from ticketflow.cli._types import Commands
from ticketflow.cli._values import setting
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import LocalKafkaBroker


def register(commands: Commands) -> None:
    broker = commands.add_parser("broker", help="the local single-node Kafka (no Docker needed)")
    broker.add_argument("action", choices=["up", "down", "status"])
    broker.set_defaults(handler=run_broker)

    topics = commands.add_parser("topics", help="create the tickets/labeled/dead-letter topics")
    topics.add_argument("action", choices=["create"])
    topics.add_argument(
        "--partitions",
        type=setting("kafka_topic_partitions"),
        help="default: KAFKA_TOPIC_PARTITIONS",
    )
    topics.set_defaults(handler=run_topics)


def local_broker(settings: Settings) -> LocalKafkaBroker:
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


def topic_plan(settings: Settings, partitions: int | None = None) -> list[tuple[int, list[str]]]:
    """(partitions, topic names): the worker's topics, then model-updates on one partition
    (announcements are read in the order they were made)."""
    worker_topics = [
        settings.kafka_topic_tickets,
        settings.kafka_topic_labeled,
        settings.kafka_topic_dlq,
        *([settings.kafka_topic_monitor] if settings.monitor_enabled else []),
        *([settings.kafka_topic_feedback] if settings.feedback_enabled else []),
    ]
    return [
        (partitions or settings.kafka_topic_partitions, worker_topics),
        (1, [settings.kafka_topic_model_updates]),
        # One partition: few records, read whole (and in order) by a restarting worker.
        *([(1, [settings.kafka_topic_incidents])] if settings.incidents_enabled else []),
    ]


def create_all_topics(settings: Settings, partitions: int | None = None) -> dict[str, str]:
    """Create every topic of :func:`topic_plan` that is missing; name -> outcome."""
    outcomes: dict[str, str] = {}
    for count, names in topic_plan(settings, partitions):
        outcomes.update(
            create_topics(
                settings.kafka_client_config(),
                names,
                partitions=count,
                replication=settings.kafka_topic_replication,
                # The incidents topic keeps the last event per incident: a restarting worker
                # restores the open ones from it.
                config=(
                    {"cleanup.policy": "compact"}
                    if names == [settings.kafka_topic_incidents]
                    else None
                ),
            )
        )
    return outcomes


def run_topics(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings)
    for name, outcome in create_all_topics(settings, args.partitions).items():
        print(f"{name}: {outcome}")
    return 0
