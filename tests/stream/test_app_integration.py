"""The whole path on the real broker: raw events in, labels / dead letters out, vectors stored."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import chromadb
import pytest

from tests.fixtures.pipeline import WorkerProcess
from ticketflow.adapters.kafka.clients import consume, encode_event, produce_raw
from ticketflow.devtools.sample import generate_tickets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_KINDS = (
    "invalid_json",
    "not_object",
    "missing_id",
    "empty_id",
    "wrong_types",
    "empty_text",
    "not_utf8",
    "body_too_large",
    "absurd_tags",
)


def malformed(kind: str, i: int) -> bytes:
    """One malformed payload of ``kind``; ``i`` makes each payload unique."""
    return {
        "invalid_json": lambda: f'{{"ticket_id": "bad-{i}", "subject": '.encode(),
        "not_object": lambda: json.dumps([f"bad-{i}", "list"]).encode(),
        "missing_id": lambda: json.dumps({"subject": f"no id {i}", "body": "x"}).encode(),
        "empty_id": lambda: json.dumps({"ticket_id": "", "body": f"x {i}"}).encode(),
        "wrong_types": lambda: json.dumps({"ticket_id": i, "subject": ["a"], "tags": 5}).encode(),
        "empty_text": lambda: json.dumps(
            {"ticket_id": f"bad-{i}", "subject": " ", "body": ""}
        ).encode(),
        "not_utf8": lambda: b'{"ticket_id": "bad-' + str(i).encode() + b'", "body": "\xff\xfe"}',
        "body_too_large": lambda: json.dumps(
            {"ticket_id": f"bad-{i}", "body": "x" * 25_000}
        ).encode(),
        "absurd_tags": lambda: json.dumps(
            {"ticket_id": f"bad-{i}", "body": "x", "tags": [f"t{j}" for j in range(5_000)]}
        ).encode(),
    }[kind]()


def collect(
    config: dict[str, str], topic: str, want: int, timeout_s: float = 300.0
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        records = list(consume(config, topic, max_messages=None, timeout_s=5.0))
        if len(records) < want:
            time.sleep(2)
    return records


def test_500_events_every_valid_one_labeled_every_bad_one_dead_lettered(
    worker: WorkerProcess, kafka_config: dict[str, str], tmp_path: Path
) -> None:
    env = worker.env
    valid = generate_tickets(500 - 6 * len(BAD_KINDS), seed=11)
    bad = [
        (kind, malformed(kind, n * 100 + k)) for n in range(6) for k, kind in enumerate(BAD_KINDS)
    ]
    payloads: list[tuple[bytes | None, bytes]] = [
        (t["ticket_id"].encode(), encode_event(t)) for t in valid
    ] + [(None, raw) for _, raw in bad]
    random.Random(3).shuffle(payloads)
    assert len(payloads) == 500 and len(bad) >= 50

    worker.start()
    worker.wait_ready()
    assert produce_raw(kafka_config, env["KAFKA_TOPIC_TICKETS"], payloads) == 500

    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(valid))
    dead = collect(kafka_config, env["KAFKA_TOPIC_DLQ"], len(bad))
    metrics = worker.metrics()
    worker.stop()

    labeled_ids = Counter(r["ticket_id"] for r in labeled)
    expected_ids = {t["ticket_id"] for t in valid}
    missing = expected_ids - set(labeled_ids)
    print(
        f"\nlabeled {len(labeled)} (unique {len(labeled_ids)}), "
        f"dead {len(dead)}, missing {len(missing)}"
    )
    assert not missing
    assert set(labeled_ids) == expected_ids
    sample = labeled[0]
    assert set(sample["predictions"]) == {"queue", "priority"}
    assert len(sample["predictions"]["queue"]["top"]) == 3
    assert sample["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"

    originals = Counter(r["original"] for r in dead)
    reasons: dict[str, set[str]] = {}
    for kind, raw in bad:
        text = raw.decode("utf-8", errors="strict") if kind != "not_utf8" else None
        match = [r for r in dead if (text is not None and r["original"] == text)]
        if kind == "not_utf8":
            match = [r for r in dead if r["error_type"] == "not_utf8"]
        assert match, f"{kind} payload missing from the DLQ"
        reasons.setdefault(kind, set()).update(r["error_type"] for r in match)
        assert all(r["reason"] for r in match)
    assert len(dead) >= len(bad)
    assert sum(originals.values()) == len(dead)
    assert reasons["body_too_large"] == {"validation_error"}
    assert reasons["not_object"] == {"not_an_object"}
    print("dead-letter reasons:", {k: sorted(v) for k, v in reasons.items()})

    assert f"ticketflow_tickets_labeled_total {float(len(valid))}" in metrics
    client = chromadb.PersistentClient(path=env["CHROMA_PATH"])
    stored = client.get_collection("tickets").get(ids=sorted(expected_ids), include=["metadatas"])
    assert set(stored["ids"]) == expected_ids
    assert all(m["model_version"] == sample["model_version"] for m in stored["metadatas"])


def test_sigkill_mid_stream_loses_nothing(
    worker: WorkerProcess, kafka_config: dict[str, str]
) -> None:
    env = worker.env
    tickets = generate_tickets(600, seed=12)
    worker.start()
    worker.wait_ready()
    produce_raw(
        kafka_config,
        env["KAFKA_TOPIC_TICKETS"],
        [(t["ticket_id"].encode(), encode_event(t)) for t in tickets],
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = [
            x
            for x in worker.metrics().splitlines()
            if x.startswith("ticketflow_tickets_labeled_total")
        ]
        if line and float(line[0].split()[-1]) >= 150:
            break
        time.sleep(0.5)
    worker.kill()
    worker.start()
    worker.wait_ready()
    labeled = collect(kafka_config, env["KAFKA_TOPIC_LABELED"], len(tickets))
    ids = Counter(r["ticket_id"] for r in labeled)
    missing = {t["ticket_id"] for t in tickets} - set(ids)
    duplicates = sum(c - 1 for c in ids.values())
    print(
        f"\ncrash test: published {len(tickets)}, labeled records {len(labeled)}, "
        f"missing {len(missing)}, duplicates {duplicates}"
    )
    assert not missing
    # Offsets are committed batch by batch: the kill replays the batch being published and at
    # most one finished batch whose commit was on its way.
    assert duplicates <= 2 * int(env["WORKER_BATCH_MAX"])
