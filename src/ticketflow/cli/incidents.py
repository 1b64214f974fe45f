"""``ticketflow incidents list|show``: the emerging incidents the worker published.

The compacted ``KAFKA_TOPIC_INCIDENTS`` is read from its beginning to the end it had when the
command started, by partition assignment (no consumer group, nothing committed), and folded
into the last event per incident id (:mod:`ticketflow.monitoring.incidents_view`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ticketflow.cli._checks import require_broker
from ticketflow.cli._types import Commands
from ticketflow.config import Settings
from ticketflow.monitoring.incidents_view import IncidentBook, details, fold, summary, table

logger = logging.getLogger(__name__)

EPILOG = """\
Incidents are read from KAFKA_TOPIC_INCIDENTS (compacted, keyed by incident id): the last
event of each id is the incident's state. The worker publishes them when INCIDENTS_ENABLED is
true (docs/incidents.md). Nothing is committed: reading never moves a consumer group.
exit codes: 0 done, 1 broker/topic trouble or no such incident (show), 2 usage.
"""


def register(commands: Commands) -> None:
    incidents = commands.add_parser(
        "incidents",
        help="list and show emerging incidents (bursts of similar tickets)",
        description="Read the emerging incidents the worker found (docs/incidents.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = incidents.add_subparsers(dest="incidents_action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", help="open incidents: id, state, size, first/last seen, top terms, labels"
    )
    listing.add_argument("--closed", action="store_true", help="closed incidents too")
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per incident instead of a table"
    )
    listing.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show", help="one incident whole: members, representative ticket, terms, labels"
    )
    show.add_argument("incident_id", metavar="ID", help="an incident id from `incidents list`")
    show.add_argument("--json", action="store_true", help="the last event, as JSON")
    show.set_defaults(handler=run_show)


def read_book(settings: Settings) -> IncidentBook:
    """The incidents of the topic now; unreadable records are counted on stderr."""
    from ticketflow.adapters.kafka.dlq import TopicNotFoundError, read_topic

    require_broker(settings)
    topic = settings.kafka_topic_incidents
    try:
        book = fold(
            (record.key, record.value)
            for record in read_topic(settings.kafka_client_config(), topic)
        )
    except TopicNotFoundError as exc:
        raise TopicNotFoundError(
            f"{exc.args[0]}: check KAFKA_TOPIC_INCIDENTS; the worker publishes incidents only "
            "with INCIDENTS_ENABLED=true (`INCIDENTS_ENABLED=true ticketflow topics create` "
            "makes the topic)"
        ) from None
    if book.unreadable:
        print(f"{topic}: {book.unreadable} records are not incidents (skipped)", file=sys.stderr)
    return book


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    book = read_book(settings)
    events = book.listed(closed=args.closed)
    if args.json:
        for event in events:
            print(json.dumps(summary(event), ensure_ascii=False))
        return 0
    closed = len(book.incidents) - book.open_count
    print(
        f"{settings.kafka_topic_incidents}: {book.open_count} open, {closed} closed"
        + ("" if args.closed or not closed else " (--closed lists them)")
    )
    if events:
        print("\n".join(table(events)))
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    book = read_book(settings)
    event = book.get(args.incident_id)
    if event is None:
        print(
            f"ticketflow incidents show: no incident {args.incident_id!r} on "
            f"{settings.kafka_topic_incidents} (`ticketflow incidents list --closed` lists them)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(event.model_dump(mode="json"), ensure_ascii=False))
        return 0
    print("\n".join(details(event)))
    return 0
