"""The batch labeller with the incident detector: a burst of the same problem becomes one
incident, published keyed by its id, and its members' labelled tickets carry the id."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.stream.test_worker import Recorder, make_labeler
from ticketflow.config import Settings
from ticketflow.monitoring.incidents import IncidentDetector
from ticketflow.schemas import IncidentEvent, IncidentStatus, LabeledTicket
from ticketflow.stream.incidents import incident_config
from ticketflow.stream.routing import Position
from ticketflow.stream.worker import RawEvent

pytestmark = pytest.mark.unit

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def event(offset: int, ticket_id: str, body: str, at_s: float) -> RawEvent:
    created = (START + timedelta(seconds=at_s)).isoformat()
    value = json.dumps({"ticket_id": ticket_id, "subject": "", "body": body, "created_at": created})
    return RawEvent(key=None, value=value.encode(), position=Position("tickets", 0, offset))


def test_a_burst_becomes_one_incident_on_its_topic_and_on_its_members(tmp_path: Path) -> None:
    labeler, labeled, _, _, metrics = make_labeler(tmp_path)
    incidents = Recorder()
    labeler.send_incidents = incidents
    labeler.incidents = IncidentDetector(incident_config(Settings(incident_min_size=3)))
    quiet = [
        event(i, f"q-{i}", f"question number {i} about invoice {i * 7}", 700.0 * i)
        for i in range(6)
    ]
    burst = [
        event(10 + i, f"vpn-{i}", "vpn gateway unreachable cannot connect", 5000.0 + 20 * i)
        for i in range(5)
    ]
    for batch in (quiet[:3], quiet[3:], burst[:2], burst[2:]):
        asyncio.run(labeler.handle(batch))
    events = [IncidentEvent.model_validate_json(v) for _, v in incidents.sent]
    keys = {k for k, _ in incidents.sent}
    assert len({e.incident_id for e in events}) == 1
    assert keys == {events[0].incident_id.encode()}
    assert events[0].status is IncidentStatus.OPEN
    assert set(events[-1].member_ticket_ids) == {f"vpn-{i}" for i in range(5)}
    out = [LabeledTicket.model_validate_json(v) for _, v in labeled.sent]
    carried = {t.ticket_id: t.incident_id for t in out}
    # The third ticket opened it: it and the later ones carry the id in their own record.
    assert {k for k, v in carried.items() if v} == {"vpn-2", "vpn-3", "vpn-4"}
    assert metrics.registry.get_sample_value("ticketflow_incidents_open") == 1
    assert metrics.registry.get_sample_value("ticketflow_incidents_opened_total") == 1


def test_the_words_part_takes_its_own_distance_and_needs_stored_texts() -> None:
    # Off by default: the vectors alone at their distance. On: the joined space's distance
    # unless one is set. Without stored texts (CHROMA_DOCUMENT=none) there is no history to
    # seed the words' part with: it is off again, at the vectors' distance.
    default = incident_config(Settings())
    assert (default.text_weight, default.max_distance) == (0.0, 0.3)
    joined = incident_config(Settings(incident_text_weight=0.3))
    assert (joined.text_weight, joined.max_distance) == (0.3, 0.52)
    chosen = incident_config(Settings(incident_text_weight=0.3, incident_max_distance=0.45))
    assert (chosen.text_weight, chosen.max_distance) == (0.3, 0.45)
    alone = incident_config(Settings(incident_text_weight=0.3, chroma_document="none"))
    assert (alone.text_weight, alone.max_distance) == (0.0, 0.3)
