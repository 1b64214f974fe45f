"""``ticketflow dlq list|show|replay``: inspect the dead-letter topic and replay originals.

The topic is read from its beginning (or from ``--since``) to the end it had when the
command started, by partition assignment: no consumer group, nothing committed, no waiting for
more. The decisions (what to show, what to replay, what a replay looks like) are
:mod:`ticketflow.batch.dlq`'s; this module reads, prints and publishes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ticketflow.cli._checks import require_broker
from ticketflow.cli._types import Commands
from ticketflow.cli._values import COUNT
from ticketflow.config import Settings
from ticketflow.data.errors import InputError
from ticketflow.data.since import SINCE_HELP, parse_since
from ticketflow.schemas import DeadLetterReason

if TYPE_CHECKING:
    from ticketflow.batch.dlq import ReplayIndex, StoredDeadLetter

logger = logging.getLogger(__name__)

# Replays and labels are looked for from this long before the earliest selected failure:
# the worker stamps failed_at with its own clock, the broker stamps records with the
# producer's, and the two may disagree a little.
CLOCK_SKEW = timedelta(minutes=5)

EPILOG = """\
Dead letters are read from KAFKA_TOPIC_DLQ, from the beginning (or --since) to its current
end; nothing is committed, so inspecting never moves a consumer group.

replay sends each selected dead letter's original back to the topic it came from
(KAFKA_TOPIC_TICKETS; feedback to KAFKA_TOPIC_FEEDBACK), keyed by ticket id, with the headers
ticketflow-replay-of (<dlq topic>:<partition>:<offset>), ticketflow-replay-reason and
ticketflow-replay-failed-at. It is idempotent by ticket id: a dead letter is skipped when a
replay of it, or of a later failure of the same ticket, is already on the target topic, or when
the ticket was labelled on KAFKA_TOPIC_LABELED after it failed. Originals that are not UTF-8 or
were truncated (DLQ_KEEP_BYTES) are skipped and counted. Fix the cause first (a setting, a new
model), then replay: what fails again is dead-lettered again, and can be replayed again.

--since takes an ISO 8601 date or time (2026-11-01, 2026-11-01T08:00; UTC unless it has a
zone) or an age back from now: a number and s, m, h, d or w (90s, 30m, 1.5h, 7d, 1w).
exit codes: 0 done, 1 broker/topic trouble or a replay not acknowledged, 2 usage.
"""


def _since(text: str) -> datetime:
    # The one --since grammar (ticketflow.data.since), also ticketflow report performance's;
    # a bad value is an argparse usage error (exit 2), as every other bad option is.
    try:
        return parse_since(text, datetime.now(UTC))
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=[r.value for r in DeadLetterReason],
        metavar="R",
        help="only this reason (repeatable): " + ", ".join(r.value for r in DeadLetterReason),
    )
    parser.add_argument(
        "--since",
        type=_since,
        metavar="T",
        help=f"only dead letters that failed at or after T: {SINCE_HELP}",
    )


def register(commands: Commands) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, show and replay dead letters",
        description="Inspect the dead-letter topic and replay originals after a fix.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="count dead letters by reason")
    _add_filters(listing)
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per reason instead of a table"
    )
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="print dead letters, newest last")
    _add_filters(show)
    show.add_argument("--limit", type=COUNT, default=20, help="at most N, the latest (default 20)")
    show.add_argument(
        "--chars", type=COUNT, default=200, help="cut originals to N characters (default 200)"
    )
    show.add_argument("--json", action="store_true", help="one dead letter per line, as JSON")
    show.set_defaults(handler=run_show)

    replay = actions.add_parser(
        "replay", help="re-publish originals to the topic they came from (idempotent)"
    )
    _add_filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be sent, send nothing"
    )
    replay.set_defaults(handler=run_replay)


def read_dead_letters(settings: Settings, since: datetime | None) -> list[StoredDeadLetter]:
    """Every dead letter of the topic (from about ``since``); unreadable records are logged
    and counted on stderr, never fatal."""
    from ticketflow.adapters.kafka.dlq import read_topic
    from ticketflow.batch.dlq import DlqPosition, Unreadable, parse_dead_letter

    topic = settings.kafka_topic_dlq
    since_ms = int((since - CLOCK_SKEW).timestamp() * 1000) if since is not None else None
    letters: list[StoredDeadLetter] = []
    unreadable = 0
    for record in read_topic(settings.kafka_client_config(), topic, since_ms=since_ms):
        parsed = parse_dead_letter(
            DlqPosition(record.topic, record.partition, record.offset), record.value
        )
        if isinstance(parsed, Unreadable):
            unreadable += 1
            logger.warning("%s: %s", parsed.position, parsed.error)
            continue
        letters.append(parsed)
    if unreadable:
        print(f"{topic}: {unreadable} records are not dead letters (skipped)", file=sys.stderr)
    return letters


def _selected(args: argparse.Namespace, settings: Settings) -> list[StoredDeadLetter]:
    from ticketflow.adapters.kafka.dlq import TopicNotFoundError
    from ticketflow.batch.dlq import select

    require_broker(settings)
    try:
        letters = read_dead_letters(settings, args.since)
    except TopicNotFoundError as exc:
        raise TopicNotFoundError(
            f"{exc.args[0]}: check KAFKA_TOPIC_DLQ (`ticketflow topics create` makes it)"
        ) from None
    reasons = [DeadLetterReason(r) for r in args.reason]
    return select(letters, reasons=reasons, since=args.since)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch.dlq import summarize

    letters = _selected(args, settings)
    summaries = summarize(letters)
    if args.json:
        for s in summaries:
            row = {
                "reason": s.reason.value,
                "count": s.count,
                "first_failed_at": s.first_failed_at.isoformat(),
                "last_failed_at": s.last_failed_at.isoformat(),
            }
            print(json.dumps(row))
        return 0
    print(f"{settings.kafka_topic_dlq}: {len(letters)} dead letters")
    if summaries:
        print(f"{'reason':<20} {'count':>7}  {'first failed_at':<25}  {'last failed_at':<25}")
        for s in summaries:
            print(
                f"{s.reason.value:<20} {s.count:>7}  {_time(s.first_failed_at):<25}  "
                f"{_time(s.last_failed_at):<25}"
            )
    return 0


def _time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.batch.dlq import shorten

    letters = _selected(args, settings)
    letters.sort(key=lambda s: (s.letter.failed_at, s.position))
    shown = letters[-args.limit :] if args.limit > 0 else []
    for stored in shown:
        letter = stored.letter
        if args.json:
            row = {"dlq_position": str(stored.position), **letter.model_dump(mode="json")}
            print(json.dumps(row, ensure_ascii=False))
            continue
        cut = " (truncated)" if letter.original_truncated else ""
        print(
            f"{stored.position}  {letter.error_type.value}  ticket {letter.ticket_id or '-'}  "
            f"from {letter.source_topic}:{letter.source_partition}:{letter.source_offset}  "
            f"failed {_time(letter.failed_at)}"
        )
        print(f"  reason: {shorten(letter.reason, max(args.chars, 40))}")
        print(
            f"  original ({letter.original_size} bytes, {letter.original_encoding}{cut}): "
            f"{shorten(letter.original, args.chars)}"
        )
    if not args.json:
        print(f"shown {len(shown)} of {len(letters)} selected dead letters")
    return 0


def build_index(
    settings: Settings, letters: list[StoredDeadLetter], targets: set[str]
) -> ReplayIndex:
    """Replays already on the ``targets`` and labels on the labeled topic, from a little
    before the earliest failure of ``letters`` (anything older cannot be a replay of them)."""
    from ticketflow.adapters.kafka.dlq import TopicNotFoundError, read_topic
    from ticketflow.batch.dlq import ReplayIndex, earliest_failure

    index = ReplayIndex()
    earliest = earliest_failure(letters)
    if earliest is None:
        return index
    since_ms = int((earliest - CLOCK_SKEW).timestamp() * 1000)
    config = settings.kafka_client_config()
    for topic in sorted(targets):
        for record in read_topic(config, topic, since_ms=since_ms):
            index.add_record(record.key, record.headers)
    if settings.kafka_topic_tickets in targets:
        try:
            for record in read_topic(config, settings.kafka_topic_labeled, since_ms=since_ms):
                index.add_label(record.key, record.timestamp_ms)
        except TopicNotFoundError:  # nothing was ever labelled: nothing to skip for it
            logger.info("no topic %s: no labels to compare with", settings.kafka_topic_labeled)
    return index


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    from ticketflow.adapters.kafka.dlq import Outbound, PublishError, publish
    from ticketflow.batch.dlq import plan_replay, replay_target, summary_line

    letters = _selected(args, settings)
    targets = {
        topic
        for stored in letters
        if (
            topic := replay_target(
                stored.letter,
                tickets_topic=settings.kafka_topic_tickets,
                feedback_topic=settings.kafka_topic_feedback,
            )[0]
        )
        is not None
    }
    index = build_index(settings, letters, targets)
    plan = plan_replay(
        letters,
        index,
        tickets_topic=settings.kafka_topic_tickets,
        feedback_topic=settings.kafka_topic_feedback,
    )
    per_topic = Counter(message.topic for message in plan.messages)
    if args.dry_run:
        for message in plan.messages:
            letter = message.source.letter
            key = message.key.decode("utf-8", errors="replace") if message.key else "-"
            print(
                f"would send {message.source.position} -> {message.topic} key {key} "
                f"({letter.error_type.value}, {letter.original_size} bytes)"
            )
        print(summary_line(plan, dry_run=True, targets=per_topic))
        return 0
    try:
        publish(
            settings.kafka_client_config(),
            (Outbound(m.topic, m.key, m.value, m.headers) for m in plan.messages),
        )
    except PublishError as exc:
        print(f"ticketflow dlq replay: error: {exc}", file=sys.stderr)
        return 1
    print(summary_line(plan, dry_run=False, targets=per_topic))
    return 0
