"""``ticketflow report data|performance``: one self-contained HTML page per report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ticketflow.cli._types import Commands, add_encoding_argument, add_map_argument
from ticketflow.cli._values import COUNT, number
from ticketflow.config import Settings
from ticketflow.data.since import SINCE_HELP, parse_since

logger = logging.getLogger(__name__)


def register(commands: Commands) -> None:
    report = commands.add_parser(
        "report",
        help="HTML reports: profile a labelled file; live accuracy from the vector store",
        description="Self-contained HTML reports (docs/reports.md).",
    )
    reports = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")

    data = reports.add_parser(
        "data",
        help="profile a labelled file: classes, lengths, languages, tags, duplicates, terms",
    )
    data.add_argument("--data", type=Path, required=True, help="CSV, JSONL or Parquet file")
    data.add_argument(
        "--target",
        action="append",
        help="label column (repeatable; default: the label-like columns of the file)",
    )
    add_map_argument(data)
    add_encoding_argument(data)
    data.add_argument("--limit", type=COUNT, help="use only the first N rows")
    data.add_argument("--out", type=Path, required=True, help="folder for index.html")
    data.add_argument(
        "--near-duplicate-sample",
        type=number(int, ge=0),
        default=2_000,
        metavar="N",
        help="tickets compared with the whole file to find near duplicates (default 2000)",
    )
    data.set_defaults(handler=run_data)

    performance = reports.add_parser(
        "performance",
        help="accuracy of the stored model labels against human corrections and imported "
        "labels (Evidently)",
    )
    performance.add_argument(
        "--since",
        metavar="T",
        help=f"only tickets labelled at or after T: {SINCE_HELP}",
    )
    performance.add_argument(
        "--target", action="append", help="target(s) to score (default: every labelled one)"
    )
    performance.add_argument(
        "--min-labels",
        type=COUNT,
        default=20,
        help="labelled tickets a target needs for its report (default 20)",
    )
    performance.add_argument("--out", type=Path, required=True, help="folder for index.html")
    performance.set_defaults(handler=run_performance)


def run_data(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import reports
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.models.encoders import encoders_root

    started = time.perf_counter()
    profiled = reports.read_profiled(
        args.data,
        targets=args.target,
        mapping=ColumnMapping.parse(args.map),
        limits=settings.field_limits,
        limit=args.limit,
        encoding=args.encoding,
    )
    options = reports.DataReportOptions(
        max_text_chars=settings.max_text_chars,
        model_name=settings.embedding_model,
        export_root=encoders_root(settings.model_registry_dir),
        max_tokens=settings.embedding_max_tokens or None,
        near_duplicate_queries=args.near_duplicate_sample,
    )
    page = reports.build_data_report(profiled, options)
    index = reports.write_page(page, args.out)
    seconds = time.perf_counter() - started
    print(
        f"wrote {index} ({len(profiled.tickets):,} rows, targets "
        f"{', '.join(profiled.labels) or 'none'}) in {seconds:.1f} s"
    )
    return 0


def run_performance(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch import reports
    from ticketflow.models.registry import ModelRegistry
    from ticketflow.runtime.loading import open_written_store, store_location

    since = parse_since(args.since) if args.since else None
    where = store_location(settings)
    name = settings.chroma_collection
    store = open_written_store(settings)
    # Documents too: under CHROMA_DOCUMENT=full they are the model text, matched against the
    # training rows' text hashes where the ids differ (a file re-exported with new ids).
    records = [record for page in store.pages(documents=True) for record in page]
    metadatas = [record.metadata for record in records]
    targets = args.target or reports.store_targets(metadatas)
    scored = reports.scored_labels(
        metadatas,
        targets,
        since=since.timestamp() if since is not None else None,
        ids=[record.ticket_id for record in records],
        documents=[record.document for record in records],
        training=ModelRegistry(settings.model_registry_dir).training_rows,
    )
    page = reports.build_performance_report(
        scored,
        args.out,
        source=f"ChromaDB {where}, collection {name!r}",
        since=since,
        min_labels=args.min_labels,
        records=len(metadatas),
    )
    index = reports.write_page(page, args.out)
    for target, numbers in page.summary["targets"].items():
        total = numbers["all"]
        seen = numbers["training_rows"]
        print(
            f"{target}: {total['n']} labelled tickets the model was not trained on, accuracy "
            f"{total['accuracy']:.3f}, macro-F1 {total['macro_f1']:.3f}; "
            f"{seen['n']} training rows left out"
            + (f" (accuracy {seen['accuracy']:.3f})" if seen["n"] else "")
            + (
                f"; {numbers['unchecked']} unchecked (model without recorded training rows)"
                if numbers["unchecked"]
                else ""
            )
        )
    if not scored:
        print(
            "ticketflow report performance: no labelled tickets in the store (no human "
            "correction, no imported label): nothing to score",
            file=sys.stderr,
        )
    for target in page.summary["too_few"]:
        print(
            f"ticketflow report performance: too few labelled tickets for {target}: "
            f"{page.summary['targets'][target]['all']['n']} the model was not trained on "
            f"(--min-labels {args.min_labels})",
            file=sys.stderr,
        )
    print(f"wrote {index}")
    return 0
