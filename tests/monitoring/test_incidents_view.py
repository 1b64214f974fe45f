from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import incident_event
from ticketflow.monitoring.incidents_view import (
    IncidentBook,
    desk_view,
    details,
    fold,
    summary,
    table,
    top_labels,
)
from ticketflow.schemas.incident import IncidentEvent, IncidentStatus

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def event(
    incident_id: str,
    status: IncidentStatus,
    members: list[str],
    *,
    at_min: int = 0,
    terms: tuple[str, ...] = ("vpn", "gateway", "tunnel", "connect", "remote", "timeout"),
) -> IncidentEvent:
    return incident_event(
        incident_id,
        status,
        members,
        start=START + timedelta(minutes=at_min),
        terms=terms,
        labels={"queue": {"Network": len(members) - 1, "General": 1}},
    )


def record(e: IncidentEvent) -> tuple[bytes, bytes]:
    return e.incident_id.encode(), e.model_dump_json().encode()


def test_the_last_event_per_id_wins_in_topic_order() -> None:
    opened = event("inc-a", IncidentStatus.OPEN, ["t1", "t2", "t3"])
    grown = event("inc-a", IncidentStatus.UPDATED, ["t1", "t2", "t3", "t4"])
    other = event("inc-b", IncidentStatus.OPEN, ["u1", "u2"], at_min=30)
    closed = event("inc-b", IncidentStatus.CLOSED, ["u1", "u2"], at_min=30)

    book = fold([record(opened), record(other), record(grown), record(closed)])

    assert set(book.incidents) == {"inc-a", "inc-b"}
    assert book.incidents["inc-a"].size == 4
    assert book.incidents["inc-a"].status is IncidentStatus.UPDATED
    assert book.incidents["inc-b"].status is IncidentStatus.CLOSED
    assert book.open_count == 1
    assert [e.incident_id for e in book.listed()] == ["inc-a"]
    # closed ones too, the latest activity first (inc-b was last seen at 9:32, inc-a at 9:04)
    assert [e.incident_id for e in book.listed(closed=True)] == ["inc-b", "inc-a"]


def test_a_tombstone_removes_its_incident_and_unreadable_records_are_counted() -> None:
    book = fold(
        [
            record(event("inc-a", IncidentStatus.OPEN, ["t1", "t2"])),
            (b"inc-a", None),
            (b"junk", b"not json"),
            (b"half", json.dumps({"incident_id": "half"}).encode()),
            record(event("inc-c", IncidentStatus.OPEN, ["v1", "v2"])),
        ]
    )
    assert set(book.incidents) == {"inc-c"}
    assert book.unreadable == 2


def test_a_ticket_finds_its_incident_by_id_or_by_membership() -> None:
    book = fold(
        [
            record(event("inc-a", IncidentStatus.OPEN, ["t1", "t2"])),
            record(event("inc-a", IncidentStatus.UPDATED, ["t1", "t2", "t3"])),
            record(event("inc-b", IncidentStatus.OPEN, ["u1", "u2"], at_min=30)),
        ]
    )
    a = book.of_ticket("t1")
    assert a is not None and a.incident_id == "inc-a" and a.size == 3
    b = book.of_ticket("anything", "inc-b")
    assert b is not None and b.incident_id == "inc-b"
    # an id the book does not hold (its events not read yet): membership still answers
    unknown = book.of_ticket("u2", "inc-zzz")
    assert unknown is not None and unknown.incident_id == "inc-b"
    assert book.of_ticket("nobody") is None
    assert IncidentBook().of_ticket("t1", "inc-a") is None


def test_a_ticket_of_a_merged_incident_finds_the_one_it_went_into() -> None:
    # The worker merged inc-de into inc-en: inc-de closed with a pointer, inc-en lists all.
    absorbed = event("inc-de", IncidentStatus.CLOSED, ["d1", "d2"]).model_copy(
        update={"merged_into": "inc-en"}
    )
    kept = event("inc-en", IncidentStatus.UPDATED, ["e1", "e2", "d1", "d2"], at_min=5)
    book = fold([record(event("inc-de", IncidentStatus.OPEN, ["d1", "d2"])), record(absorbed)])
    # Before the kept incident's event is read: the closed one, as it is.
    found = book.of_ticket("d1", "inc-de")
    assert found is not None and found.incident_id == "inc-de"
    book = fold([record(absorbed), record(kept)])
    for ticket_id, carried in (("d1", "inc-de"), ("d2", None), ("e1", "inc-en")):
        found = book.of_ticket(ticket_id, carried)
        assert found is not None and found.incident_id == "inc-en" and found.size == 4
    assert "closed (merged into inc-en)" in "\n".join(details(absorbed))
    loop = absorbed.model_copy(update={"incident_id": "inc-x", "merged_into": "inc-x"})
    assert fold([record(loop)]).current("inc-x") == loop


def test_listing_rows_and_json_summary() -> None:
    e = event("inc-a", IncidentStatus.OPEN, ["t1", "t2", "t3", "t4", "t5"])
    row = summary(e)
    assert row == {
        "incident_id": "inc-a",
        "status": "open",
        "size": 5,
        "first_seen": "2026-12-07T09:00:00Z",
        "last_seen": "2026-12-07T09:05:00Z",
        "top_terms": ["vpn", "gateway", "tunnel", "connect", "remote"],
        "labels": {"queue": {"Network": 4, "General": 1}},
        "representative_ticket_id": "t1",
    }
    json.dumps(row)  # plain JSON
    lines = table([e])
    assert lines[0].split() == ["incident", "state", "size", "first", "seen", "last", "seen"]
    assert lines[1].split() == [
        "inc-a",
        "open",
        "5",
        "2026-12-07T09:00:00Z",
        "2026-12-07T09:05:00Z",
    ]
    assert lines[2] == "  terms: vpn, gateway, tunnel, connect, remote"
    assert lines[3] == "  labels: queue: Network (4), General (1)"
    assert top_labels(e, per_target=1) == {"queue": ["Network (4)"]}


def test_show_prints_the_whole_incident() -> None:
    members = [f"t{i}" for i in range(7)]
    e = event("inc-a", IncidentStatus.CLOSED, members)
    text = "\n".join(details(e))
    assert text.startswith("incident inc-a\n")
    assert "state:          closed" in text
    assert "representative: t0" in text
    assert "detected by:    t6 (6 close tickets in the window, 0.25 expected)" in text
    # every term, not only the listing's first five
    assert "top terms:      vpn, gateway, tunnel, connect, remote, timeout" in text
    assert "    queue: Network (6), General (1)" in text
    assert text.endswith("  members:\n" + "\n".join(f"    {m}" for m in members))


def test_show_says_when_the_member_list_is_cut() -> None:
    e = event("inc-a", IncidentStatus.UPDATED, ["t1", "t2"]).model_copy(update={"size": 700})
    assert "  size:           700 (2 listed)" in details(e)


def test_the_desk_sees_id_state_size_and_five_terms() -> None:
    e = event("inc-a", IncidentStatus.OPEN, ["t1", "t2"])
    assert desk_view(e) == {
        "incident_id": "inc-a",
        "status": "open",
        "size": 2,
        "top_terms": ["vpn", "gateway", "tunnel", "connect", "remote"],
    }
