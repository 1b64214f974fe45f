"""Emerging incidents on the real broker, a real worker and its vector store: a burst in, one
incident out on ``ticket-incidents``, its members' labelled tickets carry its id; a restart
of the worker neither loses the open incident nor opens it a second time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fixtures.pipeline import WorkerProcess
from tests.stream.test_similar_integration import labeled_by_id, produce
from ticketflow.adapters.kafka.clients import consume
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.schemas import IncidentEvent, IncidentStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# One outage told by different people: close in any encoder's space, not copies.
BURST = [
    ("VPN down", "The VPN gateway is unreachable since this morning, I cannot connect."),
    ("VPN not working", "Cannot connect to the VPN, the gateway does not answer."),
    ("VPN gateway unreachable", "VPN connection fails: gateway unreachable from home office."),
    ("No VPN", "Since 9:00 the VPN gateway is unreachable and I cannot connect at all."),
    ("VPN problem", "My VPN client cannot connect, it says the gateway is unreachable."),
    ("VPN outage", "VPN gateway unreachable for our whole team, nobody can connect."),
    ("VPN fails", "The VPN cannot connect: gateway unreachable, tried twice."),
    ("VPN again", "Still cannot connect to the VPN, the gateway is unreachable."),
]


def burst_ticket(i: int, start: datetime) -> dict[str, Any]:
    subject, body = BURST[i]
    return {
        "ticket_id": f"vpn-{i}",
        "subject": subject,
        "body": body,
        # Event time: one every 30 s, all within the detector's window.
        "created_at": (start + timedelta(seconds=30 * i)).isoformat(),
    }


def incident_events(
    config: dict[str, str], topic: str, want: set[str], timeout_s: float = 60.0
) -> list[IncidentEvent]:
    """Every event on the incidents topic, once some event lists all of ``want``."""
    deadline = time.monotonic() + timeout_s
    events: list[IncidentEvent] = []
    while time.monotonic() < deadline:
        events = [
            IncidentEvent.model_validate(record)
            for record in consume(config, topic, max_messages=None, timeout_s=3.0)
        ]
        if any(want <= set(e.member_ticket_ids) for e in events):
            return events
    raise AssertionError(f"no incident lists {sorted(want)}: {events}")


def test_a_burst_is_one_incident_on_its_members_and_survives_a_restart(
    worker: WorkerProcess, kafka_config: dict[str, str]
) -> None:
    env = worker.env
    topic = env["KAFKA_TOPIC_INCIDENTS"]
    env["INCIDENTS_ENABLED"] = "true"
    create_topics(
        kafka_config, [topic], partitions=1, replication=1, config={"cleanup.policy": "compact"}
    )
    topic_in, topic_out = env["KAFKA_TOPIC_TICKETS"], env["KAFKA_TOPIC_LABELED"]
    start = datetime.now(UTC).replace(microsecond=0)
    tickets = [burst_ticket(i, start) for i in range(len(BURST))]
    first, later = tickets[:6], tickets[6:]

    worker.start()
    worker.wait_ready()
    produce(kafka_config, topic_in, first)
    labeled = labeled_by_id(kafka_config, topic_out, {t["ticket_id"] for t in first})
    events = incident_events(kafka_config, topic, {t["ticket_id"] for t in first})
    ids = {e.incident_id for e in events}
    assert len(ids) == 1, events
    (incident,) = ids
    assert events[0].status is IncidentStatus.OPEN
    assert events[-1].size == 6
    # Tickets labelled from the batch that opened it on carry its id (the opener at least);
    # earlier ones are listed in the event only. None carries another id.
    carried = {t: r["incident_id"] for t, r in labeled.items()}
    assert events[-1].detected_by_ticket_id in {t for t, i in carried.items() if i == incident}
    assert set(carried.values()) <= {incident, None}

    # A restart: the open incident comes back from the topic and the store.
    worker.stop()
    worker.start()
    worker.wait_ready()
    produce(kafka_config, topic_in, later)
    labeled = labeled_by_id(kafka_config, topic_out, {t["ticket_id"] for t in later})
    assert {labeled[t["ticket_id"]]["incident_id"] for t in later} == {incident}
    events = incident_events(kafka_config, topic, {t["ticket_id"] for t in tickets})
    assert {e.incident_id for e in events} == {incident}
    assert [e.status for e in events].count(IncidentStatus.OPEN) == 1
    assert events[-1].size == len(tickets)
    assert set(events[-1].member_ticket_ids) == {t["ticket_id"] for t in tickets}
    assert "ticketflow_incidents_open 1.0" in worker.metrics()
