import pytest

from ticketflow.models.text import build_text, clean_text, tags_line
from ticketflow.schemas import Ticket

pytestmark = pytest.mark.unit


def ticket(**fields: object) -> Ticket:
    return Ticket.model_validate({"ticket_id": "T1", **fields})


def test_subject_body_and_tags_in_one_text() -> None:
    text = build_text(ticket(subject="VPN down", body="Cannot connect.", tags=["vpn", "network"]))
    assert text == "VPN down\nCannot connect.\nTags: vpn, network"


def test_cleaning_markup_entities_literal_newlines_and_controls() -> None:
    raw = "<p>Hello&nbsp;team,</p><br/>the\\nprinter\x00 is   <b>down</b>\r\n\r\n\tthanks"
    assert clean_text(raw) == "Hello team,\nthe\nprinter is down\nthanks"


def test_empty_fields_are_left_out() -> None:
    assert build_text(ticket(body="only body")) == "only body"
    assert build_text(ticket(subject="only subject", tags=[" "])) == "only subject"
    assert tags_line([]) == ""


def test_long_body_is_cut_but_subject_and_tags_survive() -> None:
    body = "word " * 2_000
    text = build_text(ticket(subject="Refund please", body=body, tags=["billing"]), max_chars=300)
    assert len(text) <= 300
    assert text.startswith("Refund please\n")
    assert text.endswith("Tags: billing")
    assert "…" in text


def test_same_function_is_deterministic() -> None:
    t = ticket(subject="A", body="B", tags=["x"])
    assert build_text(t) == build_text(t.model_copy())
