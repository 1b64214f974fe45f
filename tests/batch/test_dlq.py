"""The pure side of ``ticketflow dlq``: parsing, filtering, counting and the replay plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ticketflow.batch.dlq import (
    REPLAY_FAILED_AT,
    REPLAY_OF,
    REPLAY_REASON,
    SKIP_ALREADY_REPLAYED,
    SKIP_BASE64,
    SKIP_LABELED_SINCE,
    SKIP_SUPERSEDED,
    SKIP_TRUNCATED,
    SKIP_UNKNOWN_SOURCE,
    DlqPosition,
    ReplayIndex,
    StoredDeadLetter,
    Unreadable,
    parse_dead_letter,
    plan_replay,
    select,
    shorten,
    summarize,
    summary_line,
)
from ticketflow.schemas import DeadLetter, DeadLetterReason

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
TOPICS = {"tickets_topic": "tickets", "feedback_topic": "feedback"}


def stored(
    offset: int,
    *,
    ticket_id: str | None = "T-1",
    reason: DeadLetterReason = DeadLetterReason.VALIDATION_ERROR,
    minutes: float = 0,
    source_topic: str = "tickets",
    encoding: str = "utf-8",
    truncated: bool = False,
    original: str | None = None,
    partition: int = 0,
) -> StoredDeadLetter:
    body = original or json.dumps({"ticket_id": ticket_id, "body": f"body {offset}"})
    letter = DeadLetter.model_validate(
        {
            "original": body,
            "original_encoding": encoding,
            "original_size": len(body),
            "original_truncated": truncated,
            "original_key": ticket_id,
            "ticket_id": ticket_id,
            "error_type": reason,
            "reason": "body is too long",
            "source_topic": source_topic,
            "source_partition": 1,
            "source_offset": 100 + offset,
            "failed_at": T0 + timedelta(minutes=minutes),
        }
    )
    return StoredDeadLetter(DlqPosition("tickets-dlq", partition, offset), letter)


def test_a_dead_letter_round_trips_and_anything_else_is_unreadable() -> None:
    one = stored(3)
    parsed = parse_dead_letter(one.position, one.letter.model_dump_json().encode())
    assert parsed == one
    for value in (None, b"not json", b'{"original": "x"}'):
        bad = parse_dead_letter(one.position, value)
        assert isinstance(bad, Unreadable) and bad.position == one.position and bad.error


def test_position_prints_and_parses_back() -> None:
    position = DlqPosition("my.dlq-topic_1", 2, 40)
    assert str(position) == "my.dlq-topic_1:2:40"
    assert DlqPosition.parse(str(position)) == position
    assert DlqPosition.parse("nonsense") is None
    assert DlqPosition.parse("t:x:1") is None


def test_select_by_reason_and_since() -> None:
    letters = [
        stored(0, minutes=0),
        stored(1, minutes=10, reason=DeadLetterReason.INVALID_JSON),
        stored(2, minutes=20),
    ]
    assert select(letters) == letters
    assert select(letters, reasons=[DeadLetterReason.VALIDATION_ERROR]) == [
        letters[0],
        letters[2],
    ]
    assert select(letters, since=T0 + timedelta(minutes=10)) == letters[1:]
    assert (
        select(
            letters,
            reasons=[DeadLetterReason.INVALID_JSON],
            since=T0 + timedelta(minutes=11),
        )
        == []
    )


def test_summary_counts_by_reason_with_first_and_last_failure() -> None:
    letters = [
        stored(0, minutes=5),
        stored(1, minutes=1, reason=DeadLetterReason.NOT_UTF8),
        stored(2, minutes=2),
        stored(3, minutes=9),
    ]
    (first, second) = summarize(letters)
    assert (first.reason, first.count) == (DeadLetterReason.VALIDATION_ERROR, 3)
    assert first.first_failed_at == T0 + timedelta(minutes=2)
    assert first.last_failed_at == T0 + timedelta(minutes=9)
    assert (second.reason, second.count) == (DeadLetterReason.NOT_UTF8, 1)
    assert summarize([]) == []


def test_replay_sends_originals_keyed_by_ticket_with_headers() -> None:
    letters = [stored(0, ticket_id="T-1"), stored(1, ticket_id="T-2", partition=2)]
    plan = plan_replay(letters, ReplayIndex(), **TOPICS)
    assert not plan.skipped and plan.selected == 2
    first, second = plan.messages
    assert (first.topic, first.key) == ("tickets", b"T-1")
    assert first.value == letters[0].letter.original.encode()
    headers = dict(second.headers)
    assert headers[REPLAY_OF] == b"tickets-dlq:2:1"
    assert headers[REPLAY_REASON] == b"validation_error"
    assert datetime.fromisoformat(headers[REPLAY_FAILED_AT].decode()) == T0


def test_what_cannot_be_replayed_is_skipped_and_counted() -> None:
    letters = [
        stored(
            0, ticket_id=None, encoding="base64", original="/w==", reason=DeadLetterReason.NOT_UTF8
        ),
        stored(1, truncated=True),
        stored(2, source_topic="somewhere-else"),
        stored(3, ticket_id="T-9", reason=DeadLetterReason.UNKNOWN_TICKET, source_topic="fb"),
        stored(4, ticket_id=None, original="{broken", reason=DeadLetterReason.INVALID_JSON),
    ]
    plan = plan_replay(letters, ReplayIndex(), tickets_topic="tickets", feedback_topic="fb")
    assert plan.skipped == {SKIP_BASE64: 1, SKIP_TRUNCATED: 1, SKIP_UNKNOWN_SOURCE: 1}
    feedback, keyless = plan.messages
    # Feedback goes back to the feedback topic; an event without an id goes back unkeyed.
    assert (feedback.topic, feedback.key) == ("fb", b"T-9")
    assert (keyless.topic, keyless.key, keyless.value) == ("tickets", None, b"{broken")


def test_only_the_latest_dead_letter_of_a_ticket_is_sent() -> None:
    older, newer, other = stored(0, minutes=1), stored(7, minutes=3), stored(2, ticket_id="T-2")
    plan = plan_replay([older, other, newer], ReplayIndex(), **TOPICS)
    assert [m.source for m in plan.messages] == [other, newer]
    assert plan.skipped == {SKIP_SUPERSEDED: 1}


def index_of(
    plan_messages: list[tuple[bytes | None, tuple[tuple[str, bytes], ...]]],
) -> ReplayIndex:
    index = ReplayIndex()
    for key, headers in plan_messages:
        index.add_record(key, headers)
    return index


def test_a_second_replay_of_the_same_dead_letters_sends_nothing() -> None:
    letters = [stored(i, ticket_id=f"T-{i}", minutes=i) for i in range(50)]
    first = plan_replay(letters, ReplayIndex(), **TOPICS)
    assert len(first.messages) == 50
    # What the first replay published, as the tickets topic holds it (plus an ordinary event).
    index = index_of([(m.key, m.headers) for m in first.messages] + [(b"T-0", ())])
    second = plan_replay(letters, index, **TOPICS)
    assert second.messages == [] and second.skipped == {SKIP_ALREADY_REPLAYED: 50}


def test_keyless_dead_letters_are_recognised_by_position() -> None:
    letter = stored(5, ticket_id=None, original="{broken", reason=DeadLetterReason.INVALID_JSON)
    (message,) = plan_replay([letter], ReplayIndex(), **TOPICS).messages
    again = plan_replay([letter], index_of([(None, message.headers)]), **TOPICS)
    assert again.messages == [] and again.skipped == {SKIP_ALREADY_REPLAYED: 1}


def test_a_replay_of_a_later_failure_covers_the_earlier_ones() -> None:
    older, newer = stored(0, minutes=1), stored(9, minutes=5)
    (sent,) = plan_replay([newer], ReplayIndex(), **TOPICS).messages
    plan = plan_replay([older, newer], index_of([(sent.key, sent.headers)]), **TOPICS)
    assert plan.messages == [] and plan.skipped == {SKIP_ALREADY_REPLAYED: 2}


def test_a_replay_that_failed_again_can_be_replayed_again() -> None:
    first_failure = stored(0, minutes=1)
    (sent,) = plan_replay([first_failure], ReplayIndex(), **TOPICS).messages
    failed_again = stored(12, minutes=30)  # the replayed event, dead-lettered again
    plan = plan_replay(
        [first_failure, failed_again], index_of([(sent.key, sent.headers)]), **TOPICS
    )
    assert [m.source for m in plan.messages] == [failed_again]
    assert plan.skipped == {SKIP_ALREADY_REPLAYED: 1}


def test_a_ticket_labelled_after_it_failed_is_not_overwritten() -> None:
    failed = stored(0, ticket_id="T-1", minutes=10)
    index = ReplayIndex()
    index.add_label(b"T-1", int((T0 + timedelta(minutes=20)).timestamp() * 1000))  # newer
    index.add_label(b"T-2", int((T0 + timedelta(minutes=5)).timestamp() * 1000))  # older
    earlier_label = stored(1, ticket_id="T-2", minutes=10)
    plan = plan_replay([failed, earlier_label], index, **TOPICS)
    assert [m.source for m in plan.messages] == [earlier_label]
    assert plan.skipped == {SKIP_LABELED_SINCE: 1}
    # Feedback is exactly for labelled tickets: a label never holds it back.
    feedback = stored(2, ticket_id="T-1", minutes=10, source_topic="feedback")
    assert len(plan_replay([feedback], index, **TOPICS).messages) == 1


def test_index_ignores_records_that_are_not_replays() -> None:
    index = ReplayIndex()
    index.add_record(b"T-1", ())
    index.add_record(b"T-1", ((REPLAY_OF, b"garbage"), (REPLAY_FAILED_AT, b"not a time")))
    index.add_label(None, 1)
    index.add_label(b"T-1", None)
    assert index == ReplayIndex()


def test_shorten_and_summary_line() -> None:
    assert shorten("a\n  b   c", 10) == "a b c"
    assert shorten("x" * 50, 10) == "x" * 9 + "…"
    plan = plan_replay([stored(0), stored(1, truncated=True)], ReplayIndex(), **TOPICS)
    line = summary_line(plan, dry_run=False, targets={"tickets": 1})
    assert line == (
        f"replayed 1 of 2 selected dead letters (tickets: 1); skipped 1 ({SKIP_TRUNCATED}: 1)"
    )
    assert summary_line(plan, dry_run=True, targets={}) == (
        f"would replay 1 of 2 selected dead letters; skipped 1 ({SKIP_TRUNCATED}: 1)"
    )
