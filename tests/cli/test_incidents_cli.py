"""``ticketflow incidents list|show`` on the real broker: incident events published on a
compacted topic as the worker publishes them (keyed by id, open then updated then closed),
the command run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.test_unreachable_broker import clean_env
from tests.fixtures.pipeline import REPO
from tests.helpers import incident_event
from ticketflow.adapters.kafka.clients import produce_raw
from ticketflow.adapters.kafka.topics import create_topics, delete_topics
from ticketflow.schemas.incident import IncidentEvent, IncidentStatus

pytestmark = pytest.mark.integration

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def event(incident_id: str, status: IncidentStatus, members: list[str]) -> IncidentEvent:
    return incident_event(
        incident_id,
        status,
        members,
        start=START,
        terms=["vpn", "gateway", "tunnel"] if incident_id.startswith("vpn") else ["mail"],
        labels={"queue": {"Network": len(members)}},
        representative=members[1],
    )


def incidents(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ticketflow", "incidents", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def incident_topic(kafka_config: dict[str, str]) -> Iterator[str]:
    topic = f"t-incidents-{uuid.uuid4().hex[:12]}"
    create_topics(
        kafka_config,
        [topic],
        partitions=1,
        replication=1,
        config={"cleanup.policy": "compact"},
    )
    yield topic
    with contextlib.suppress(Exception):  # cleanup only
        delete_topics(kafka_config, [topic], timeout=10.0)


def test_list_and_show_read_the_last_event_per_incident(
    kafka_config: dict[str, str], incident_topic: str, tmp_path: Path
) -> None:
    vpn = [f"T-{i}" for i in range(6)]
    mail = ["M-1", "M-2", "M-3", "M-4", "M-5"]
    published = [
        event("vpn-1", IncidentStatus.OPEN, vpn[:5]),
        event("mail-1", IncidentStatus.OPEN, mail),
        event("vpn-1", IncidentStatus.UPDATED, vpn),
        event("mail-1", IncidentStatus.CLOSED, mail),
    ]
    records = [(e.incident_id.encode(), e.model_dump_json().encode()) for e in published]
    assert produce_raw(kafka_config, incident_topic, records) == len(records)
    env = clean_env(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=kafka_config["bootstrap.servers"],
        KAFKA_TOPIC_INCIDENTS=incident_topic,
    )

    table = incidents(env, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"{incident_topic}: 1 open, 1 closed (--closed lists them)"
    assert lines[2].split()[:3] == ["vpn-1", "updated", "6"]
    assert "terms: vpn, gateway, tunnel" in table.stdout and "mail-1" not in table.stdout

    rows = [
        json.loads(line)
        for line in incidents(env, "list", "--json", "--closed").stdout.splitlines()
    ]
    assert [(r["incident_id"], r["status"], r["size"]) for r in rows] == [
        ("vpn-1", "updated", 6),
        ("mail-1", "closed", 5),
    ]
    assert rows[0]["labels"] == {"queue": {"Network": 6}}

    show = incidents(env, "show", "vpn-1")
    assert show.returncode == 0, show.stderr
    assert "representative: T-1" in show.stdout
    assert show.stdout.rstrip().endswith("\n".join(f"    {m}" for m in vpn))
    whole = json.loads(incidents(env, "show", "mail-1", "--json").stdout)
    assert IncidentEvent.model_validate(whole) == published[-1]

    missing = incidents(env, "show", "nope")
    assert missing.returncode == 1
    assert "no incident 'nope'" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_a_missing_topic_names_the_setting(kafka_config: dict[str, str], tmp_path: Path) -> None:
    env = clean_env(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=kafka_config["bootstrap.servers"],
        KAFKA_TOPIC_INCIDENTS=f"t-absent-{uuid.uuid4().hex[:12]}",
    )
    done = incidents(env, "list")
    assert done.returncode == 1
    assert "KAFKA_TOPIC_INCIDENTS" in done.stderr and "INCIDENTS_ENABLED" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
