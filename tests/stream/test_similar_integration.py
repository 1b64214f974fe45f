"""SIMILAR_K on the real broker and a real worker: a ticket's copy is flagged as its duplicate."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fixtures.pipeline import WorkerProcess
from ticketflow.adapters.kafka.clients import consume, encode_event, produce_raw
from ticketflow.devtools.sample import generate_tickets
from ticketflow.models.text import build_texts
from ticketflow.schemas import Ticket

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def labeled_by_id(
    config: dict[str, str], topic: str, want: set[str], timeout_s: float = 180.0
) -> dict[str, dict[str, Any]]:
    """The last labeled-tickets record of each id in ``want``, once all of them are there."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while not want <= found.keys() and time.monotonic() < deadline:
        for record in consume(config, topic, max_messages=None, timeout_s=3.0):
            found[record["ticket_id"]] = record
    missing = want - found.keys()
    assert not missing, f"no label for {sorted(missing)}"
    return found


def produce(config: dict[str, str], topic: str, tickets: list[dict[str, Any]]) -> None:
    events = [(t["ticket_id"].encode(), encode_event(t)) for t in tickets]
    assert produce_raw(config, topic, events) == len(tickets)


def test_a_copy_of_a_stored_ticket_names_it_as_possible_duplicate(
    worker: WorkerProcess, kafka_config: dict[str, str]
) -> None:
    env = worker.env
    env["SIMILAR_K"] = "3"
    topic_in, topic_out = env["KAFKA_TOPIC_TICKETS"], env["KAFKA_TOPIC_LABELED"]
    tickets = generate_tickets(40, seed=21)
    # The original: a ticket whose model text no other generated ticket shares, so its copy
    # has one right answer.
    texts = build_texts([Ticket.model_validate(t) for t in tickets], max_chars=2000)
    original = next(t for t, text in zip(tickets, texts, strict=True) if texts.count(text) == 1)
    exact = {**original, "ticket_id": "copy-exact"}
    near = {
        **original,
        "ticket_id": "copy-near",
        "subject": str(original["subject"]).upper(),
        "tags": list(reversed(original["tags"])),
    }

    worker.start()
    worker.wait_ready()
    produce(kafka_config, topic_in, tickets)
    first = labeled_by_id(kafka_config, topic_out, {t["ticket_id"] for t in tickets})
    produce(kafka_config, topic_in, [exact, near])
    copies = labeled_by_id(kafka_config, topic_out, {"copy-exact", "copy-near"})
    metrics = worker.metrics()

    for copy in ("copy-exact", "copy-near"):
        record = copies[copy]
        assert record["possible_duplicate_of"] == original["ticket_id"], record["similar"]
        assert 1 <= len(record["similar"]) <= 3
        nearest = record["similar"][0]
        assert nearest["ticket_id"] == original["ticket_id"] and nearest["distance"] < 0.002
        distances = [s["distance"] for s in record["similar"]]
        assert distances == sorted(distances)
        assert copy not in {s["ticket_id"] for s in record["similar"]}
    # The original was labelled before its copies existed: it is nobody's duplicate.
    assert first[original["ticket_id"]]["possible_duplicate_of"] is None
    assert 'ticketflow_stage_duration_seconds_count{stage="similar_query"}' in metrics

    # Off (the default): the fields are there, empty, and no query is made.
    worker.stop()
    env["SIMILAR_K"] = "0"
    worker.start()
    worker.wait_ready()
    produce(kafka_config, topic_in, [{**original, "ticket_id": "copy-off"}])
    off = labeled_by_id(kafka_config, topic_out, {"copy-off"})["copy-off"]
    assert off["similar"] == [] and off["possible_duplicate_of"] is None
    assert 'stage="similar_query"' not in worker.metrics()
