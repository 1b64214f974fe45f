"""``ticketflow monitor`` and ``ticketflow drift``: the drift monitor, references, reports."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ticketflow.cli._checks import open_registry, require_broker
from ticketflow.cli._types import Commands, add_encoding_argument, add_map_argument
from ticketflow.cli._values import COUNT, SEED, setting
from ticketflow.config import Settings

if TYPE_CHECKING:  # the handlers import the monitor (Evidently: seconds) when they run
    from ticketflow.monitoring.service import DriftReport


def register(commands: Commands) -> None:
    monitor = commands.add_parser("monitor", help="run the drift monitor (windows + Evidently)")
    monitor.add_argument("--no-create-topics", action="store_true")
    monitor.set_defaults(handler=run_monitor)

    drift = commands.add_parser("drift", help="drift reference sets and Evidently reports")
    drift_commands = drift.add_subparsers(dest="drift_command", required=True)
    reference = drift_commands.add_parser(
        "reference", help="build the reference set of a model from a ticket file"
    )
    reference.add_argument("--data", type=Path, required=True, help="JSONL, CSV or Parquet")
    add_map_argument(reference)
    add_encoding_argument(reference)
    reference.add_argument("--limit", type=COUNT, help="use only the first N rows")
    reference.add_argument("--version", help="model version (default: MODEL_VERSION or current)")
    reference.add_argument("--seed", type=SEED, default=42)
    reference.set_defaults(handler=run_drift_reference)
    report = drift_commands.add_parser(
        "report",
        help="write an Evidently HTML report of recent tickets vs the reference",
        description="Compare recent tickets with the model's reference set: by default the "
        "last monitor records on KAFKA_TOPIC_MONITOR; with --input, a file. A JSONL file of "
        "the worker's monitor records (they carry vector_f16_b64) is read as such; any other "
        "file (JSONL, CSV, Parquet; --map, --encoding as for drift reference) is a ticket "
        "file, labelled by the current model (or --version) as the worker would and compared "
        "with that model's reference. No broker is needed with --input.",
    )
    report.add_argument(
        "--window",
        type=setting("drift_window_size"),
        help="the last N monitor records or tickets (default: DRIFT_WINDOW_SIZE)",
    )
    report.add_argument(
        "--input",
        type=Path,
        help="a file instead of the topic: monitor records (JSONL), or tickets "
        "(JSONL, CSV, Parquet) labelled by the model first",
    )
    add_map_argument(report)
    add_encoding_argument(report)
    report.add_argument(
        "--version", help="ticket files: label with this model (default: MODEL_VERSION or current)"
    )
    report.add_argument("--out", type=Path, help="HTML path (default: under DRIFT_REPORT_DIR)")
    report.set_defaults(handler=run_drift_report)


def run_monitor(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings)  # before Evidently's import, which takes seconds

    from ticketflow.monitoring.service import run_monitor

    logging.getLogger().setLevel(settings.log_level)
    run_monitor(settings, create_missing_topics=not args.no_create_topics)
    return 0


def run_drift_reference(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.monitoring.service import build_reference

    open_registry(settings)
    try:
        built = build_reference(
            settings,
            args.data,
            mapping=ColumnMapping.parse(args.map),
            version=args.version,
            limit=args.limit,
            seed=args.seed,
            encoding=args.encoding,
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"reference of model {built.model_version}: {built.tickets} tickets -> {built.path}")
    return 0


def run_drift_report(args: argparse.Namespace, settings: Settings) -> int:
    if not args.input:
        require_broker(settings)  # before Evidently's import, which takes seconds

    from ticketflow.monitoring import service

    count = args.window or settings.drift_window_size
    if args.input and not service.holds_monitor_records(args.input, encoding=args.encoding):
        return _report(args, _ticket_file_report(args, settings, count))
    if args.input:
        records = service.read_monitor_records(args.input, encoding=args.encoding)[-count:]
    else:
        records = service.latest_monitor_records(settings, count)
    if not records:
        source = args.input or f"topic {settings.kafka_topic_monitor}"
        print(f"ticketflow drift: error: no monitor records in {source}", file=sys.stderr)
        return 2 if args.input else 1  # a bad input file, or nothing labelled yet
    return _report(args, service.drift_report(settings, records, out=args.out))


def _ticket_file_report(args: argparse.Namespace, settings: Settings, count: int) -> DriftReport:
    """The last ``count`` tickets of --input labelled by the model, as the worker would."""
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.monitoring import service

    # The file first: a wrong path or column fails before the registry and the encoders.
    tickets = service.read_tickets(
        settings, args.input, mapping=ColumnMapping.parse(args.map), encoding=args.encoding
    )[-count:]
    open_registry(settings)
    labelled = service.label_tickets(settings, tickets, version=args.version)
    return service.sample_report(settings, labelled, len(tickets), out=args.out)


def _report(args: argparse.Namespace, report: DriftReport) -> int:
    for feature in report.result.features:
        flag = "DRIFT" if feature.drifted else "ok"
        print(f"{feature.feature:24} {feature.method:16} {feature.score:8.4f}  {flag}")
    print(
        f"{report.records} records of model {report.model_version}: "
        f"drifted={report.result.drifted}; report: {report.path}"
    )
    return 0
