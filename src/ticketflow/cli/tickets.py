"""``ticketflow sample|produce|consume|feedback``: tickets and corrections in, labels out."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from ticketflow.cli._checks import UsageError, require_broker
from ticketflow.cli._types import Commands, add_encoding_argument, add_map_argument
from ticketflow.cli._values import COUNT, POSITIVE, SEED
from ticketflow.config import Settings

# Handlers import what they run: building the parser stays cheap, and the worker's process
# never imports pandas (ticketflow.data.datasets) or the Kafka clients it does not use.


def register(commands: Commands) -> None:
    sample = commands.add_parser("sample", help="write generated, labelled sample tickets")
    sample.add_argument("--n", type=COUNT, default=1000, help="how many tickets (default 1000)")
    sample.add_argument("--out", type=Path, required=True, help=".jsonl, .csv or .parquet")
    sample.add_argument("--seed", type=SEED, default=42)
    sample.set_defaults(handler=run_sample)

    produce = commands.add_parser("produce", help="publish tickets from a file or the generator")
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument("path", nargs="?", type=Path, help="JSONL or CSV (Parquet too)")
    source.add_argument("--sample", type=COUNT, metavar="N", help="publish N generated tickets")
    produce.add_argument("--seed", type=SEED, default=7, help="generator seed for --sample")
    produce.add_argument(
        "--rate", type=POSITIVE, help="tickets per second (default: as fast as possible)"
    )
    produce.add_argument("--topic", help="default: KAFKA_TOPIC_TICKETS")
    add_map_argument(produce)
    add_encoding_argument(produce)
    produce.set_defaults(handler=run_produce)

    consumer = commands.add_parser("consume", help="print records of a topic, one JSON per line")
    consumer.add_argument("--topic", help="default: KAFKA_TOPIC_LABELED")
    consumer.add_argument("--max", type=COUNT, help="stop after N records")
    consumer.add_argument(
        "--timeout", type=POSITIVE, default=10.0, help="stop after S idle seconds"
    )
    consumer.add_argument("--group", help="consumer group (default: a fresh one)")
    consumer.set_defaults(handler=run_consume)

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


def run_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.devtools.sample import generate_tickets, write_tickets

    path = write_tickets(generate_tickets(args.n, seed=args.seed), args.out)
    print(f"wrote {args.n} tickets to {path}")
    return 0


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings)  # first: the imports below take seconds (pandas)

    from ticketflow.adapters.kafka.clients import produce_events
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.data.events import FileEvents
    from ticketflow.devtools.sample import generate_tickets

    topic = args.topic or settings.kafka_topic_tickets
    mapping = ColumnMapping.parse(args.map)
    config = settings.kafka_client_config()
    if args.sample:
        sent = produce_events(
            config, topic, generate_tickets(args.sample, seed=args.seed), rate=args.rate
        )
        print(f"published {sent} generated tickets to {topic}")
        return 0
    # The file is read as it is sent; rows that cannot be sent are skipped and logged as
    # warnings (path:line: reason). Rows the worker would dead-letter for size are among them.
    events = FileEvents(
        args.path, mapping, max_bytes=settings.kafka_max_message_bytes, encoding=args.encoding
    )
    sent = produce_events(config, topic, events, rate=args.rate)
    events.log_total()
    skipped = f"; skipped {len(events.skipped)} (see the warnings)" if events.skipped else ""
    print(f"published {sent} tickets to {topic}{skipped}")
    if sent == 0 and events.skipped:
        print(f"ticketflow produce: error: no row of {args.path} could be sent", file=sys.stderr)
        return 1
    return 0


def run_consume(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings)  # else it polls quietly and reports "0 messages"

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


def corrected_labels(args: argparse.Namespace) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in args.label:
        target, sep, label = item.partition("=")
        if not sep:
            raise UsageError(f"--label {item!r}: expected TARGET=LABEL")
        labels[target.strip()] = label.strip()
    if args.queue:
        labels["queue"] = args.queue
    if args.priority:
        labels["priority"] = args.priority
    if not labels:
        raise UsageError("nothing to correct: give --queue, --priority or --label TARGET=LABEL")
    return labels


def run_feedback(args: argparse.Namespace, settings: Settings) -> int:
    labels = corrected_labels(args)
    require_broker(settings)

    from ticketflow.adapters.kafka.clients import produce_raw
    from ticketflow.schemas import LabelFeedback

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
