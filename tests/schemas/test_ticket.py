import json

import pytest
from pydantic import ValidationError

from ticketflow.schemas import DeadLetter, FieldLimits, LabeledTicket, Ticket
from ticketflow.schemas.export import CONTRACTS, SCHEMA_DIR, render

pytestmark = pytest.mark.unit


def test_minimal_ticket_and_unknown_fields_are_kept() -> None:
    ticket = Ticket.model_validate({"ticket_id": "T1", "body": "printer jammed", "plan": "gold"})
    assert ticket.subject is None
    assert ticket.tags == []
    assert ticket.extra_fields == {"plan": "gold"}
    assert json.loads(ticket.model_dump_json())["plan"] == "gold"


def test_tag_columns_fold_into_tags_in_numeric_order() -> None:
    ticket = Ticket.model_validate(
        {
            "ticket_id": "T1",
            "subject": "s",
            "tags": ["first"],
            "tag_10": "ten",
            "tag_2": "two",
            "tag_1": "one",
            "tag_3": None,
            "tag_4": float("nan"),
            "tag_5": "  ",
        }
    )
    assert ticket.tags == ["first", "one", "two", "ten"]
    assert "tag_1" not in ticket.extra_fields


@pytest.mark.parametrize(
    "payload",
    [
        {"subject": "no id"},
        {"ticket_id": "", "subject": "x"},
        {"ticket_id": "   ", "subject": "x"},
        {"ticket_id": 42, "subject": "x"},
        {"ticket_id": "T1"},
        {"ticket_id": "T1", "subject": " ", "body": "\n"},
        {"ticket_id": "T1", "subject": "x", "tags": "not-a-list"},
        {"ticket_id": "T1", "subject": "x", "tags": [1, 2]},
        {"ticket_id": "T1", "subject": ["x"]},
        {"ticket_id": "T1", "subject": "x", "created_at": "yesterday-ish"},
    ],
)
def test_invalid_tickets_are_rejected(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Ticket.model_validate(payload)


def test_limits_come_from_context() -> None:
    limits = FieldLimits(max_body_chars=10, max_tags=2, max_tag_chars=5)
    ok = {"ticket_id": "T1", "body": "short"}
    Ticket.model_validate(ok, context={"limits": limits})
    for bad in (
        {"ticket_id": "T1", "body": "x" * 11},
        {"ticket_id": "T1", "body": "b", "tags": ["a", "b", "c"]},
        {"ticket_id": "T1", "body": "b", "tags": ["toolong"]},
    ):
        with pytest.raises(ValidationError):
            Ticket.model_validate(bad, context={"limits": limits})
    # Without context the generous defaults apply.
    Ticket.model_validate({"ticket_id": "T1", "body": "x" * 11})


def test_tags_are_stripped_and_deduplicated() -> None:
    ticket = Ticket.model_validate({"ticket_id": "T", "body": "b", "tags": [" a ", "a", "", "b"]})
    assert ticket.tags == ["a", "b"]


def test_dead_letter_keeps_binary_as_base64() -> None:
    text, encoding, truncated = DeadLetter.encode_original(b"\xff\xfe", 100)
    assert (text, encoding, truncated) == ("//4=", "base64", False)
    text, encoding, truncated = DeadLetter.encode_original("é".encode() * 10, 5)
    assert encoding == "utf-8" and truncated and text == "éé"


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_exported_json_schemas_are_up_to_date(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    assert path.is_file(), "run: python -m ticketflow.schemas.export"
    assert path.read_text(encoding="utf-8") == render(CONTRACTS[name]), (
        "schemas/json is stale: run python -m ticketflow.schemas.export"
    )


def test_labeled_ticket_schema_has_required_fields() -> None:
    schema = LabeledTicket.model_json_schema()
    required = set(schema["required"])
    assert {"ticket_id", "predictions", "needs_review", "model_version", "source"} <= required
    assert "review_gate" in required
    assert schema["properties"]["needs_review"]["type"] == "boolean"  # unchanged for consumers
    prediction = schema["$defs"]["TargetPrediction"]
    assert {"label", "probability", "needs_review", "review_threshold"} <= set(
        prediction["required"]
    )
