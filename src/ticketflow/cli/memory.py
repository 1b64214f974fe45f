"""``ticketflow backfill|similar``: historical tickets into the vector store, and searching it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ticketflow.cli._types import Commands, add_encoding_argument, add_map_argument
from ticketflow.cli._values import COUNT, number
from ticketflow.config import Settings


def register(commands: Commands) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="label historical tickets with the current model and store them in ChromaDB",
        description="Embed and label every row of a ticket file with the served model and "
        "upsert it by ticket id, as the worker stores tickets; the file's labels are kept as "
        "imported labels, which retrain learns from. Re-running skips what is stored.",
    )
    backfill.add_argument("--data", type=Path, required=True, help="CSV, JSONL or Parquet file")
    add_map_argument(backfill)
    add_encoding_argument(backfill)
    backfill.add_argument(
        "--target",
        action="append",
        help="label column(s) to import (repeatable; default: the model's targets)",
    )
    backfill.add_argument("--batch", type=COUNT, default=256, help="tickets per batch (256)")
    backfill.add_argument(
        "--force", action="store_true", help="rewrite tickets this model version already stored"
    )
    backfill.set_defaults(handler=run_backfill)

    similar = commands.add_parser(
        "similar", help="the stored tickets most similar to a stored ticket or a text"
    )
    query = similar.add_mutually_exclusive_group(required=True)
    query.add_argument("ticket_id", nargs="?", metavar="TICKET_ID", help="a stored ticket")
    query.add_argument("--text", help="a new ticket's text (subject and body)")
    similar.add_argument(
        "--k", type=number(int, ge=1, le=100), default=5, help="how many neighbours (default 5)"
    )
    similar.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="TARGET=LABEL",
        help="only tickets whose current label is LABEL (repeatable)",
    )
    similar.add_argument("--json", action="store_true", help="print JSON")
    similar.set_defaults(handler=run_similar)


def run_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch.backfill import BackfillRequest, backfill
    from ticketflow.data.datasets import ColumnMapping
    from ticketflow.runtime.loading import load_runtime

    mapping = ColumnMapping.parse(args.map)
    serving = load_runtime(settings)
    report = backfill(
        BackfillRequest(
            args.data,
            targets=args.target,
            mapping=mapping,
            limits=settings.field_limits,
            batch_size=args.batch,
            document=settings.chroma_document,
            force=args.force,
            encoding=args.encoding,
        ),
        pipeline=serving.pipeline,
        store=serving.store,
        model_version=serving.model_version,
        review=settings.review_policy(),
    )
    for line, reason in report.bad:
        print(f"{args.data}:{line}: skipped: {reason}", file=sys.stderr)
    print(report.summary())
    return 0 if not report.bad else 2


def run_similar(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.runtime.loading import load_runtime
    from ticketflow.runtime.similar import parse_where, similar_to_id, similar_to_tickets
    from ticketflow.schemas import Ticket

    where = parse_where(args.where)
    serving = load_runtime(settings)
    started = time.perf_counter()
    if args.text is not None:
        ticket = Ticket.model_validate(
            {"ticket_id": "query", "body": args.text}, context={"limits": settings.field_limits}
        )
        found = similar_to_tickets(
            serving.store, serving.pipeline, [ticket], k=args.k, where=where
        )[0]
    else:
        found = similar_to_id(
            serving.store,
            args.ticket_id,
            k=args.k,
            targets=serving.pipeline.classifier.targets,
            where=where,
        )
    took_ms = (time.perf_counter() - started) * 1000
    if args.json:
        print(json.dumps({"results": [n.as_dict() for n in found]}, ensure_ascii=False))
        return 0
    if not found:
        print("no stored ticket matches")
        return 0
    for rank, n in enumerate(found, 1):
        labels = ", ".join(f"{t}={label}" for t, label in n.labels.items())
        line = f"{rank}. {n.ticket_id}  distance {n.distance:.3f}  [{n.label_source}] {labels}"
        print(line + (f"\n   {n.subject}" if n.subject else ""))
    print(f"({len(found)} of {serving.store.count()} stored tickets, {took_ms:.0f} ms)")
    return 0
