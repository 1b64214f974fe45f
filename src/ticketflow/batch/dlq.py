"""Dead letters read back: parse, filter, count, and decide what to replay. Pure functions.

``ticketflow dlq replay`` sends a dead letter's original back to the topic it came from (the
tickets topic, or the feedback topic for feedback), keyed by its ticket id, with headers
naming the dead letter it replays (:data:`REPLAY_OF`, :data:`REPLAY_REASON`,
:data:`REPLAY_FAILED_AT`). Replay is idempotent by ticket id: a dead letter is not sent again
when

- a replay of it (its dead-letter position) is already on the target topic;
- a replay of a dead letter of the same ticket that failed at the same time or later is
  (the ticket's newer failure was replayed, this older version would overwrite it);
- the ticket was labelled at or after the time it failed (a newer version went through,
  or the replay already did): re-sending the old payload would replace a good label.

Within one run only the latest dead letter of each ticket is sent. A dead letter that came
back from a replay (the fix did not fix it) is a new failure and may be replayed again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from ticketflow.schemas import DeadLetter, DeadLetterReason

logger = logging.getLogger(__name__)

REPLAY_OF = "ticketflow-replay-of"
REPLAY_REASON = "ticketflow-replay-reason"
REPLAY_FAILED_AT = "ticketflow-replay-failed-at"

# Skip reasons, as the replay summary prints them.
SKIP_ALREADY_REPLAYED = "already replayed"
SKIP_LABELED_SINCE = "labelled since it failed"
SKIP_SUPERSEDED = "older than another dead letter of the same ticket"
SKIP_BASE64 = "original is not UTF-8 (it would fail again)"
SKIP_TRUNCATED = "original was truncated (DLQ_KEEP_BYTES)"
SKIP_UNKNOWN_SOURCE = "came from a topic that is neither the tickets nor the feedback topic"


@dataclass(frozen=True, order=True)
class DlqPosition:
    """Where a dead letter sits on the dead-letter topic; printed ``topic:partition:offset``."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> DlqPosition | None:
        # Topic names cannot hold ':', so the last two fields are the numbers.
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            return None
        try:
            return cls(parts[0], int(parts[1]), int(parts[2]))
        except ValueError:
            return None


@dataclass(frozen=True)
class StoredDeadLetter:
    position: DlqPosition
    letter: DeadLetter


@dataclass(frozen=True)
class Unreadable:
    """A record of the dead-letter topic that is not a :class:`DeadLetter`."""

    position: DlqPosition
    error: str


def parse_dead_letter(position: DlqPosition, value: bytes | None) -> StoredDeadLetter | Unreadable:
    if value is None:
        return Unreadable(position, "empty record (null value)")
    try:
        return StoredDeadLetter(position, DeadLetter.model_validate_json(value))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return Unreadable(position, f"not a dead letter: {where}: {first['msg']}")


def select(
    letters: Iterable[StoredDeadLetter],
    *,
    reasons: Iterable[DeadLetterReason] = (),
    since: datetime | None = None,
) -> list[StoredDeadLetter]:
    """The dead letters of one of ``reasons`` (all when empty) that failed at or after
    ``since``, in dead-letter-topic order."""
    wanted = frozenset(reasons)
    return [
        stored
        for stored in letters
        if (not wanted or stored.letter.error_type in wanted)
        and (since is None or stored.letter.failed_at >= since)
    ]


@dataclass(frozen=True)
class ReasonSummary:
    reason: DeadLetterReason
    count: int
    first_failed_at: datetime
    last_failed_at: datetime


def summarize(letters: Iterable[StoredDeadLetter]) -> list[ReasonSummary]:
    """Count by reason (most frequent first), with the first and last failure time of each."""
    groups: dict[DeadLetterReason, list[datetime]] = {}
    for stored in letters:
        groups.setdefault(stored.letter.error_type, []).append(stored.letter.failed_at)
    summaries = [
        ReasonSummary(reason, len(times), min(times), max(times))
        for reason, times in groups.items()
    ]
    return sorted(summaries, key=lambda s: (-s.count, s.reason.value))


def replay_target(
    letter: DeadLetter, *, tickets_topic: str, feedback_topic: str
) -> tuple[str | None, str | None]:
    """(topic to replay ``letter`` to, None) or (None, why it cannot be replayed)."""
    if letter.original_encoding != "utf-8":
        return None, SKIP_BASE64
    if letter.original_truncated:
        return None, SKIP_TRUNCATED
    if letter.error_type is DeadLetterReason.UNKNOWN_TICKET or letter.source_topic == (
        feedback_topic
    ):
        # Feedback for a ticket the store did not hold yet: back to the feedback topic, where
        # it applies once the ticket has been labelled.
        return feedback_topic, None
    if letter.source_topic == tickets_topic:
        return tickets_topic, None
    return None, SKIP_UNKNOWN_SOURCE


def ticket_key(letter: DeadLetter) -> str | None:
    """The id a replay is keyed by: the ticket id the worker read, else the original key."""
    return letter.ticket_id or letter.original_key or None


@dataclass
class ReplayIndex:
    """What the target topics already hold: replays (by dead-letter position, and the latest
    failure time replayed per ticket) and labels (the latest time per ticket)."""

    replayed: set[DlqPosition] = field(default_factory=set)
    replayed_failed_at: dict[str, datetime] = field(default_factory=dict)
    labeled_at: dict[str, datetime] = field(default_factory=dict)

    def add_record(self, key: bytes | None, headers: Sequence[tuple[str, bytes]]) -> None:
        """A record of a target topic; only replays (with :data:`REPLAY_OF`) count."""
        values = {name: value for name, value in headers}
        marker = values.get(REPLAY_OF)
        if marker is None:
            return
        position = DlqPosition.parse(marker.decode("utf-8", errors="replace"))
        if position is not None:
            self.replayed.add(position)
        failed_at = _parse_time(values.get(REPLAY_FAILED_AT))
        if key is not None and failed_at is not None:
            ticket = key.decode("utf-8", errors="replace")
            previous = self.replayed_failed_at.get(ticket)
            if previous is None or failed_at > previous:
                self.replayed_failed_at[ticket] = failed_at

    def add_label(self, key: bytes | None, timestamp_ms: int | None) -> None:
        """A record of the labeled topic (key = ticket id)."""
        if key is None or timestamp_ms is None:
            return
        ticket = key.decode("utf-8", errors="replace")
        when = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)
        previous = self.labeled_at.get(ticket)
        if previous is None or when > previous:
            self.labeled_at[ticket] = when


def _parse_time(raw: bytes | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


@dataclass(frozen=True)
class ReplayMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    source: StoredDeadLetter


@dataclass
class ReplayPlan:
    messages: list[ReplayMessage]
    skipped: Counter[str]

    @property
    def selected(self) -> int:
        return len(self.messages) + sum(self.skipped.values())


def replay_headers(stored: StoredDeadLetter) -> tuple[tuple[str, bytes], ...]:
    letter = stored.letter
    return (
        (REPLAY_OF, str(stored.position).encode("utf-8")),
        (REPLAY_REASON, letter.error_type.value.encode("utf-8")),
        (REPLAY_FAILED_AT, letter.failed_at.isoformat().encode("utf-8")),
    )


def plan_replay(
    letters: Sequence[StoredDeadLetter],
    index: ReplayIndex,
    *,
    tickets_topic: str,
    feedback_topic: str,
) -> ReplayPlan:
    """The records to publish for ``letters`` and, by reason, the dead letters skipped."""
    skipped: Counter[str] = Counter()
    latest: dict[tuple[str, str], StoredDeadLetter] = {}
    candidates: list[tuple[str, StoredDeadLetter]] = []
    for stored in letters:
        letter = stored.letter
        topic, problem = replay_target(
            letter, tickets_topic=tickets_topic, feedback_topic=feedback_topic
        )
        if topic is None:
            skipped[problem or "not replayable"] += 1
            continue
        key = ticket_key(letter)
        if _already_replayed(stored, key, index):
            skipped[SKIP_ALREADY_REPLAYED] += 1
            continue
        if topic == tickets_topic and key is not None and _labeled_since(letter, key, index):
            skipped[SKIP_LABELED_SINCE] += 1
            continue
        candidates.append((topic, stored))
        if key is not None:
            seen = latest.get((topic, key))
            if seen is None or _newer(stored, seen):
                latest[(topic, key)] = stored
    messages = []
    for topic, stored in candidates:
        key = ticket_key(stored.letter)
        if key is not None and latest[(topic, key)] is not stored:
            skipped[SKIP_SUPERSEDED] += 1
            continue
        messages.append(
            ReplayMessage(
                topic=topic,
                key=key.encode("utf-8") if key is not None else None,
                value=stored.letter.original.encode("utf-8"),
                headers=replay_headers(stored),
                source=stored,
            )
        )
    return ReplayPlan(messages, skipped)


def _already_replayed(stored: StoredDeadLetter, key: str | None, index: ReplayIndex) -> bool:
    if stored.position in index.replayed:
        return True
    replayed = index.replayed_failed_at.get(key) if key is not None else None
    return replayed is not None and replayed >= stored.letter.failed_at


def _labeled_since(letter: DeadLetter, key: str, index: ReplayIndex) -> bool:
    labeled = index.labeled_at.get(key)
    return labeled is not None and labeled >= letter.failed_at


def _newer(a: StoredDeadLetter, b: StoredDeadLetter) -> bool:
    return (a.letter.failed_at, a.position) > (b.letter.failed_at, b.position)


def earliest_failure(letters: Iterable[StoredDeadLetter]) -> datetime | None:
    times = [stored.letter.failed_at for stored in letters]
    return min(times) if times else None


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)] + "…"


def summary_line(plan: ReplayPlan, *, dry_run: bool, targets: Mapping[str, int]) -> str:
    """``replayed 200 of 200 selected dead letters (tickets: 200); skipped 0``."""
    verb = "would replay" if dry_run else "replayed"
    where = ", ".join(f"{topic}: {count}" for topic, count in sorted(targets.items()))
    skips = sum(plan.skipped.values())
    detail = "; ".join(f"{reason}: {count}" for reason, count in plan.skipped.most_common())
    return (
        f"{verb} {len(plan.messages)} of {plan.selected} selected dead letters"
        + (f" ({where})" if where else "")
        + f"; skipped {skips}"
        + (f" ({detail})" if detail else "")
    )
