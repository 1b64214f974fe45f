import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketflow.schemas import DeadLetterReason, FieldLimits, Ticket
from ticketflow.stream.routing import MAX_JSON_DEPTH, Position, Rejected, dead_letter, decode_ticket

pytestmark = pytest.mark.unit

LIMITS = FieldLimits(max_body_chars=1_000, max_tags=5)


def decode(raw: bytes | None) -> Ticket | Rejected:
    return decode_ticket(raw, limits=LIMITS, max_bytes=10_000)


def test_valid_ticket() -> None:
    result = decode(json.dumps({"ticket_id": "T1", "subject": "hi", "tag_1": "a"}).encode())
    assert isinstance(result, Ticket)
    assert result.tags == ["a"]


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (None, DeadLetterReason.INVALID_JSON, "null"),
        (b"", DeadLetterReason.INVALID_JSON, "invalid JSON"),
        (b"{not json", DeadLetterReason.INVALID_JSON, "invalid JSON"),
        (b"[1, 2]", DeadLetterReason.NOT_AN_OBJECT, "list"),
        (b'"text"', DeadLetterReason.NOT_AN_OBJECT, "str"),
        (b"\xff\xfe{}", DeadLetterReason.NOT_UTF8, "UTF-8"),
        (b'{"subject": "x"}', DeadLetterReason.VALIDATION_ERROR, "ticket_id"),
        (b'{"ticket_id": "", "body": "x"}', DeadLetterReason.VALIDATION_ERROR, "empty"),
        (b'{"ticket_id": 7, "body": "x"}', DeadLetterReason.VALIDATION_ERROR, "string"),
        (
            b'{"ticket_id": "T", "subject": "", "body": ""}',
            DeadLetterReason.VALIDATION_ERROR,
            "both empty",
        ),
        (
            b'{"ticket_id": "T", "body": "x", "tags": "a,b"}',
            DeadLetterReason.VALIDATION_ERROR,
            "tags",
        ),
        (
            json.dumps({"ticket_id": "T", "body": "x" * 1_001}).encode(),
            DeadLetterReason.VALIDATION_ERROR,
            "limit is 1000",
        ),
        (
            json.dumps({"ticket_id": "T", "body": "x", "tags": ["t"] * 6}).encode(),
            DeadLetterReason.VALIDATION_ERROR,
            "6 tags",
        ),
        (b"{" + b'"a":' * 10 + b"1" + b"}" * 10, DeadLetterReason.INVALID_JSON, "invalid JSON"),
        (b" " * 10_001, DeadLetterReason.MESSAGE_TOO_LARGE, "10001 bytes"),
    ],
)
def test_bad_input_is_rejected_with_reason(
    raw: bytes | None, reason: DeadLetterReason, words: str
) -> None:
    result = decode(raw)
    assert isinstance(result, Rejected)
    assert result.error_type == reason
    assert words in result.reason


def test_deep_json_is_rejected_without_recursion() -> None:
    nested: object = "leaf"
    for _ in range(MAX_JSON_DEPTH + 5):
        nested = {"n": nested}
    raw = json.dumps({"ticket_id": "T9", "body": "x", "extra": nested}).encode()
    result = decode_ticket(raw, limits=LIMITS, max_bytes=100_000)
    assert isinstance(result, Rejected)
    assert "nested deeper" in result.reason
    assert result.ticket_id == "T9"


def test_dead_letter_carries_position_and_original() -> None:
    raw = b'{"ticket_id": "T5"}'
    rejected = decode(raw)
    assert isinstance(rejected, Rejected)
    letter = dead_letter(raw, rejected, Position("tickets", 2, 41), keep_bytes=100)
    assert letter.ticket_id == "T5"
    assert letter.original == raw.decode()
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "tickets",
        2,
        41,
    )
    assert letter.original_size == len(raw)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2_000),
        st.text(max_size=2_000).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=50),
            lambda children: (
                st.lists(children, max_size=5)
                | st.dictionaries(st.text(max_size=10), children, max_size=5)
            ),
            max_leaves=60,
        ).map(lambda v: json.dumps(v, allow_nan=True).encode()),
        st.fixed_dictionaries(
            {"ticket_id": st.text(max_size=30) | st.integers() | st.none()},
            optional={
                "subject": st.text(max_size=100) | st.integers(),
                "body": st.text(max_size=300) | st.lists(st.text(max_size=5)),
                "tags": st.lists(st.text(max_size=20), max_size=60) | st.text(max_size=20),
                "created_at": st.text(max_size=30),
            },
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_decode_never_raises_and_always_explains(raw: bytes) -> None:
    result = decode(raw)
    assert isinstance(result, Ticket | Rejected)
    if isinstance(result, Rejected):
        assert result.reason
        letter = dead_letter(raw, result, Position("t", 0, 0), keep_bytes=512)
        assert letter.original_size == len(raw)


def test_a_huge_integer_is_invalid_json_not_a_crash() -> None:
    # Valid JSON that int() refuses past 4,300 digits: it raised out of decode_ticket (a
    # poison pill for the whole batch) before ValueError was caught.
    raw = b'{"ticket_id": "T-1", "subject": "s", "body": "b", "priority": ' + b"9" * 5_000 + b"}"
    result = decode_ticket(raw, limits=FieldLimits(), max_bytes=1_000_000)
    assert isinstance(result, Rejected)
    assert result.error_type == DeadLetterReason.INVALID_JSON


def test_a_lone_surrogate_escape_is_refused_as_not_utf8() -> None:
    raw = b'{"ticket_id": "T-2", "subject": "s", "body": "broken \\ud800 text"}'
    result = decode_ticket(raw, limits=FieldLimits(), max_bytes=1_000_000)
    assert isinstance(result, Rejected)
    assert result.error_type == DeadLetterReason.NOT_UTF8


@pytest.mark.parametrize("tags", [5, "billing", {"a": 1}, True])
def test_tags_that_are_no_list_beside_tag_columns_are_a_dead_letter_not_a_crash(
    tags: object,
) -> None:
    # Found by schemathesis on serve: folding tag_N columns into a non-list `tags` raised
    # TypeError, which escapes pydantic and would fail the whole micro-batch.
    raw = json.dumps({"ticket_id": "T-1", "body": "vpn", "tags": tags, "tag_1": "x"}).encode()
    result = decode_ticket(raw, limits=FieldLimits(), max_bytes=10_000)
    assert isinstance(result, Rejected)
    assert result.error_type is DeadLetterReason.VALIDATION_ERROR
    assert result.reason.startswith("tags:") and result.ticket_id == "T-1"
