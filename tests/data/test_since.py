"""``--since``: one grammar for ``ticketflow dlq`` and ``ticketflow report performance``,
the union of what each accepted before they shared the parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketflow.data.errors import InputError
from ticketflow.data.since import SINCE_HELP, parse_since

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


# What ``ticketflow dlq --since`` accepted (formerly ticketflow.batch.dlq.parse_since).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", T0 - timedelta(minutes=30)),
        ("2h", T0 - timedelta(hours=2)),
        ("7d", T0 - timedelta(days=7)),
        ("1w", T0 - timedelta(weeks=1)),
        ("90s", T0 - timedelta(seconds=90)),
        ("2026-11-27T12:00", datetime(2026, 11, 27, 12, 0, tzinfo=UTC)),
        ("2026-11-27T12:00+01:00", datetime(2026, 11, 27, 11, 0, tzinfo=UTC)),
        ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_or_a_time(text: str, expected: datetime) -> None:
    assert parse_since(text, T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "5 parsecs", "", "-2h"])
def test_since_refuses_anything_else_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since(text, T0)


# What ``ticketflow report performance --since`` accepted (formerly
# ticketflow.batch.reports.parse_since).
def test_parse_since_dates_times_and_durations() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:00+01:00", now).hour == 8
    with pytest.raises(InputError, match="--since 'yesterday'"):
        parse_since("yesterday", now)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5h", T0 - timedelta(minutes=90)),  # decimals: the dlq spelling
        (" 7 d ", T0 - timedelta(days=7)),  # blanks: both spellings
        ("2w", T0 - timedelta(weeks=2)),
        ("45s", T0 - timedelta(seconds=45)),  # seconds: the dlq spelling
        ("2026-11-01 08:00:30", datetime(2026, 11, 1, 8, 0, 30, tzinfo=UTC)),
    ],
)
def test_the_union_grammar_takes_either_spelling(text: str, expected: datetime) -> None:
    assert parse_since(text, T0) == expected


def test_an_age_counts_back_from_the_current_time_by_default() -> None:
    before = datetime.now(UTC)
    when = parse_since("1h")
    assert before - timedelta(hours=1) <= when <= datetime.now(UTC) - timedelta(hours=1)
    assert when.tzinfo is not None


@pytest.mark.parametrize("text", ["yesterday", "7 days", "2y", "-2h", "", "   "])
def test_a_bad_value_names_itself_and_every_accepted_form(text: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_since(text, T0)
    message = str(raised.value)
    assert message.startswith(f"--since {text!r}: ")
    for form in ("ISO 8601", "2026-11-01", "2026-11-01T08:00", "UTC", "90s", "30m", "7d"):
        assert form in message, (form, message)
    assert isinstance(raised.value, ValueError)  # what callers of either old parser caught


def test_the_help_text_names_the_same_forms() -> None:
    for form in ("ISO 8601", "2026-11-01T08:00", "UTC", "90s", "1.5h", "7d", "2w"):
        assert form in SINCE_HELP
