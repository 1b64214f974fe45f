"""The review desk shows a held ticket's emerging incident: on its page and in
``GET /v1/review``, from the id the worker stored and the ``ticket-incidents`` events (here
folded from records as the topic holds them; the topic itself: tests/cli/test_incidents_cli.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from tests.cli.test_incidents_cli import incident_topic  # noqa: F401 (fixture)
from tests.helpers import incident_event
from tests.serve.test_app import AUTH, SIGNED, TOKEN
from tests.serve.test_desk import CUTS, HOSTILE, Desk, Sink, desk  # noqa: F401 (fixture)
from ticketflow.adapters.kafka.clients import produce_raw
from ticketflow.models.record import Stamp, labeled_ticket
from ticketflow.schemas import SourcePosition, Ticket
from ticketflow.schemas.incident import IncidentEvent, IncidentStatus
from ticketflow.schemas.store import incident_id, labeled_metadata
from ticketflow.serve.app import create_app
from ticketflow.serve.desk import DeskConfig
from ticketflow.serve.holder import ModelHolder
from ticketflow.serve.incidents import IDLE_AFTER_S, IncidentFeed, Records, topic_reader

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
STORED_ID = "inc-vpn-0001"  # what the worker put on the members labelled after it opened
EARLY = "early-0"  # labelled before the incident opened: no stored id, listed as a member
LATE = ["late-0", "late-1"]
EVIL_TERM = HOSTILE[0]
WAIT_S = 30.0  # bounds every wait on the feed's thread (a hang fails, never a slow run)
T = TypeVar("T")


def stored_incident(status: IncidentStatus = IncidentStatus.UPDATED) -> IncidentEvent:
    return incident_event(
        STORED_ID,
        status,
        [EARLY, *LATE, "gone-1"],
        start=START,
        terms=["vpn", "gateway", EVIL_TERM, "tunnel", "remote", "sixth"],
        labels={"queue": {"IT Support": 4}},
        representative=LATE[0],
    )


def records(*events: IncidentEvent) -> Records:
    return [(e.incident_id.encode(), e.model_dump_json().encode()) for e in events]


def write_members(desk: Desk) -> None:  # noqa: F811
    """Three held tickets as the worker writes them: two carry the incident's id."""
    tickets = [
        Ticket(ticket_id=t, subject="VPN gateway down", body=f"cannot connect to the vpn ({t})")
        for t in [EARLY, *LATE]
    ]
    result = desk.pipeline.run(tickets)
    stamp = Stamp("v-test", desk.pipeline.encoder.name, CUTS, datetime.now(UTC))
    labeled = [
        labeled_ticket(
            tickets[i], p, stamp, source=SourcePosition(topic="t", partition=0, offset=i)
        )
        for i, p in zip(result.indices, result.predictions, strict=True)
    ]
    labeled = [
        t.model_copy(update={"incident_id": STORED_ID}) if t.ticket_id in LATE else t
        for t in labeled
    ]
    metadatas = [labeled_metadata(t) for t in labeled]
    assert [incident_id(m) for m in metadatas] == [None, STORED_ID, STORED_ID]
    desk.store.upsert([t.ticket_id for t in labeled], result.vectors, metadatas, result.texts)


def client_of(desk: Desk, feed: IncidentFeed | None) -> TestClient:  # noqa: F811
    app = create_app(
        ModelHolder(desk.served),
        desk.store,
        auth=AUTH,
        desk=DeskConfig(publisher=Sink(), queue_max_age_s=0.0, incidents=feed),
    )
    client = TestClient(app, follow_redirects=False)
    assert client.post("/login", data={"token": TOKEN, "next": "/review"}).status_code == 303
    return client


@pytest.fixture(scope="module")
def members(desk: Desk) -> Desk:  # noqa: F811
    write_members(desk)
    return desk


@pytest.mark.unit
def test_the_page_of_a_member_shows_its_incident_escaped(members: Desk) -> None:
    client = client_of(members, IncidentFeed(lambda: records(stored_incident())))
    for ticket_id in (LATE[0], EARLY):  # by the stored id, and by the member list
        page = client.get(f"/review/{ticket_id}").text
        assert 'id="incident"' in page, ticket_id
        assert f"<code>{STORED_ID}</code> (updated, 4 tickets)" in page
        assert '<span class="tag">vpn</span>' in page and "sixth" not in page
        assert str(escape(EVIL_TERM)) in page and EVIL_TERM not in page
    other = next(t for t in members.ids if not t.startswith("evil"))
    assert 'id="incident"' not in client.get(f"/review/{other}").text


@pytest.mark.unit
def test_without_the_topic_the_stored_id_alone_is_shown(members: Desk) -> None:
    client = client_of(members, None)
    page = client.get(f"/review/{LATE[1]}").text
    assert f"Part of incident <code>{STORED_ID}</code></p>" in page
    assert 'id="incident"' not in client.get(f"/review/{EARLY}").text


@pytest.mark.unit
def test_the_api_gives_each_held_ticket_its_incident_or_null(members: Desk) -> None:
    client = client_of(members, IncidentFeed(lambda: records(stored_incident())))
    body = client.get("/v1/review", params={"limit": 500}, headers=SIGNED).json()
    found = {t["ticket_id"]: t["incident"] for t in body["tickets"]}
    expected = {
        "incident_id": STORED_ID,
        "status": "updated",
        "size": 4,
        "top_terms": ["vpn", "gateway", EVIL_TERM, "tunnel", "remote"],
    }
    assert found[EARLY] == found[LATE[0]] == found[LATE[1]] == expected
    assert {k: v for k, v in found.items() if v is not None}.keys() == {EARLY, *LATE}
    bare = client_of(members, None).get("/v1/review", params={"limit": 500}, headers=SIGNED).json()
    by_id = {t["ticket_id"]: t["incident"] for t in bare["tickets"]}
    assert by_id[LATE[0]] == {
        "incident_id": STORED_ID,
        "status": None,
        "size": None,
        "top_terms": [],
    }
    assert by_id[EARLY] is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_the_feed_reads_again_after_max_age_and_keeps_its_book_through_an_outage() -> None:
    clock = Clock()
    reads: list[str] = []
    state = {"events": records(stored_incident(IncidentStatus.OPEN)), "down": False}

    def read() -> Records:
        reads.append("read")
        if state["down"]:
            raise RuntimeError("broker unreachable")
        return state["events"]  # type: ignore[return-value]

    feed = IncidentFeed(read, max_age_s=30.0, clock=clock)
    first = feed.book().get(STORED_ID)
    assert first is not None and first.status is IncidentStatus.OPEN
    state["events"] = records(stored_incident(IncidentStatus.CLOSED))
    clock.now = 29.0
    assert feed.book().get(STORED_ID) == first and len(reads) == 1
    state["down"] = True
    clock.now = 31.0
    assert feed.book().get(STORED_ID) == first and len(reads) == 2  # the outage: last book
    clock.now = 40.0
    feed.book()
    assert len(reads) == 2  # not tried again before max_age_s
    state["down"] = False
    clock.now = 62.0
    closed = feed.book().get(STORED_ID)
    assert closed is not None and closed.status is IncidentStatus.CLOSED and len(reads) == 3


@pytest.mark.integration
def test_the_feed_reads_the_topic_on_the_real_broker(
    kafka_config: dict[str, str],
    incident_topic: str,  # noqa: F811 (fixture)
) -> None:
    published = [stored_incident(IncidentStatus.OPEN), stored_incident(IncidentStatus.UPDATED)]
    assert (
        produce_raw(
            kafka_config,
            incident_topic,
            [(e.incident_id.encode(), e.model_dump_json().encode()) for e in published],
        )
        == 2
    )
    book = IncidentFeed(topic_reader(kafka_config, incident_topic)).book()
    assert list(book.incidents) == [STORED_ID]
    assert book.incidents[STORED_ID] == published[-1]
    found = book.of_ticket(EARLY)
    assert found is not None and found.incident_id == STORED_ID
    # the detector never ran: no topic, no incident (and no error)
    absent = IncidentFeed(topic_reader(kafka_config, f"{incident_topic}-absent")).book()
    assert absent.incidents == {}


class BlockingRead:
    """A topic read that waits for ``release`` (a broker that does not answer), counting
    the reads that ended."""

    def __init__(self, *events: IncidentEvent) -> None:
        self.events = list(events)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.done = 0
        self._done = threading.Condition()

    def __call__(self) -> Records:
        self.entered.set()
        # Longer than in_thread's bound: a caller that waits for this read fails there.
        assert self.release.wait(4 * WAIT_S), "never released"
        with self._done:
            self.done += 1
            self._done.notify_all()
        return records(*self.events)

    def wait_done(self, n: int) -> None:
        with self._done:
            assert self._done.wait_for(lambda: self.done >= n, WAIT_S), (self.done, n)


def in_thread(call: Callable[[], T]) -> T:
    """``call()``'s value; a call that blocks (the bug under test) fails instead of hanging."""
    found: list[T] = []
    thread = threading.Thread(target=lambda: found.append(call()), daemon=True)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive() and found, "blocked on the read"
    return found[0]


@pytest.mark.unit
def test_a_started_feed_reads_in_the_background_and_a_page_never_waits() -> None:
    clock = Clock()
    read = BlockingRead(stored_incident(IncidentStatus.OPEN))
    feed = IncidentFeed(read, max_age_s=30.0, clock=clock)
    feed.start()
    try:
        assert read.entered.wait(WAIT_S)  # the read at start, hanging
        assert in_thread(feed.book).incidents == {}  # the page goes on without it
        read.release.set()
        read.wait_done(1)
        first = in_thread(feed.book).get(STORED_ID)
        assert first is not None and first.status is IncidentStatus.OPEN
        read.release.clear()
        read.events = [stored_incident(IncidentStatus.CLOSED)]
        clock.now = 31.0  # older than max_age_s: the page gets the last book, wakes the reader
        read.entered.clear()
        assert in_thread(feed.book).get(STORED_ID) == first
        assert read.entered.wait(WAIT_S)
        assert in_thread(feed.book).get(STORED_ID) == first  # still reading
        read.release.set()
        read.wait_done(2)
        closed = in_thread(feed.book).get(STORED_ID)
        assert closed is not None and closed.status is IncidentStatus.CLOSED
    finally:
        read.release.set()
        feed.stop()
    assert read.done == 2


@pytest.mark.unit
def test_the_refresher_rests_while_no_page_asks() -> None:
    clock = Clock()
    feed = IncidentFeed(lambda: records(stored_incident()), max_age_s=30.0, clock=clock)
    feed.refresh()  # the read at start, at 0
    assert not feed.due()  # no page asked yet
    clock.now = 10.0
    feed.book()
    assert not feed.due()  # fresh
    clock.now = 40.0
    assert feed.due()  # a page in the last IDLE_AFTER_S, the book 30 s old
    clock.now = 10.0 + IDLE_AFTER_S
    assert not feed.due()  # nobody at the desk: no read until a page wakes it


@pytest.mark.unit
def test_the_app_starts_the_feed_and_a_page_does_not_wait_for_the_broker(
    members: Desk,
) -> None:
    read = BlockingRead(stored_incident())
    feed = IncidentFeed(read)
    app = create_app(
        ModelHolder(members.served),
        members.store,
        auth=AUTH,
        desk=DeskConfig(publisher=Sink(), queue_max_age_s=0.0, incidents=feed),
    )
    try:
        with TestClient(app, follow_redirects=False) as client:  # runs the lifespan
            assert client.post("/login", data={"token": TOKEN}).status_code == 303
            assert read.entered.wait(WAIT_S)  # started with the app, the broker hanging
            page = in_thread(lambda: client.get(f"/review/{LATE[0]}").text)
            assert f"Part of incident <code>{STORED_ID}</code></p>" in page  # the stored id
            assert read.done == 0  # answered while the read hangs
            read.release.set()
            read.wait_done(1)
            page = client.get(f"/review/{LATE[0]}").text
            assert f"<code>{STORED_ID}</code> (updated, 4 tickets)" in page
    finally:
        read.release.set()
    assert feed._thread is None  # stopped with the app
