"""Fault injection on the real broker: nothing published may go missing, and a worker
killed mid-stream duplicates at most the batches it had in flight.

Each test prints its counts: published, labelled, dead-lettered, missing, duplicates
(docs/guarantees.md records them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kafka import _cache_dir
from tests.fixtures.pipeline import WorkerProcess
from ticketflow.adapters.kafka.clients import consume, encode_event, produce_raw
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.devtools.kafka.local_broker import LocalKafkaBroker, free_port, wait_for_port
from ticketflow.devtools.sample import generate_tickets

# Generous per-test limits: a 5,000-ticket run with four worker starts takes ~4 min on a quiet
# 2-core machine and several times that when the cores are shared.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.timeout(1800),
]


def labeled_count(worker: WorkerProcess) -> float:
    try:
        text = worker.metrics()
    except OSError:
        return 0.0
    lines = [x for x in text.splitlines() if x.startswith("ticketflow_tickets_labeled_total")]
    return float(lines[0].split()[-1]) if lines else 0.0


def wait_labeled(worker: WorkerProcess, at_least: float, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while labeled_count(worker) < at_least:
        assert time.monotonic() < deadline, f"worker stuck below {at_least}:\n{worker.tail()}"
        assert worker.process is not None and worker.process.poll() is None, worker.tail()
        time.sleep(0.5)


def account(
    config: dict[str, str],
    env: dict[str, str],
    expected: set[str],
    *,
    timeout: float = 600,
) -> tuple[Counter[str], Counter[str]]:
    """Read both outputs until every expected id is on one of them (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        labeled = Counter(
            r["ticket_id"]
            for r in consume(config, env["KAFKA_TOPIC_LABELED"], max_messages=None, timeout_s=5)
        )
        dead = Counter(
            r.get("original_key") or r.get("ticket_id") or ""
            for r in consume(config, env["KAFKA_TOPIC_DLQ"], max_messages=None, timeout_s=3)
        )
        if expected <= set(labeled) | set(dead) or time.monotonic() > deadline:
            return labeled, dead
        time.sleep(3)


def report(
    name: str, published: int, labeled: Counter[str], dead: Counter[str], expected: set[str]
) -> int:
    missing = expected - set(labeled) - set(dead)
    duplicates = sum(c - 1 for c in labeled.values()) + sum(c - 1 for c in dead.values())
    print(
        f"\n{name}: published {published}, labeled {sum(labeled.values())} "
        f"(unique {len(labeled)}), dead-lettered {sum(dead.values())}, "
        f"missing {len(missing)}, duplicates {duplicates}"
    )
    assert not missing, sorted(missing)[:20]
    return duplicates


def publish(config: dict[str, str], topic: str, tickets: list[dict[str, Any]]) -> None:
    produce_raw(config, topic, [(t["ticket_id"].encode(), encode_event(t)) for t in tickets])


KILLS = 3
BATCH_MAX = 64


@pytest.mark.parametrize("commit_every_batch", [True, False], ids=["batch-commits", "timer-only"])
def test_worker_sigkilled_three_times(
    worker: WorkerProcess, kafka_config: dict[str, str], commit_every_batch: bool
) -> None:
    """Defaults but for the batch size; timer-only is the policy before per-batch commits."""
    worker.env["WORKER_BATCH_MAX"] = str(BATCH_MAX)
    worker.env["WORKER_COMMIT_EVERY_BATCH"] = str(commit_every_batch).lower()
    n = 5_000
    tickets = generate_tickets(n, seed=21)
    publish(kafka_config, worker.env["KAFKA_TOPIC_TICKETS"], tickets)
    for _kill in range(KILLS):
        worker.start()
        worker.wait_ready()
        wait_labeled(worker, n // 8)
        worker.kill()
    worker.start()
    expected = {t["ticket_id"] for t in tickets}
    labeled, dead = account(kafka_config, worker.env, expected)
    name = "batch commits" if commit_every_batch else "timer-only commits"
    duplicates = report(f"SIGKILL x{KILLS} ({name})", n, labeled, dead, expected)
    print(f"duplicates per kill: {duplicates / KILLS:.0f} (bound {2 * BATCH_MAX})")
    if commit_every_batch:
        # Each batch's offsets are committed once its outputs are acked, so a kill replays
        # the batch being published and at most one more (finished, its commit on the way).
        assert duplicates <= KILLS * 2 * BATCH_MAX


def test_exactly_once_is_refused_at_start(tmp_path: Path) -> None:
    """The setting that promised exactly-once and delivered duplicates is gone, with why."""
    env = {**os.environ, "WORKER_PROCESSING_GUARANTEE": "exactly_once"}
    done = subprocess.run(
        [sys.executable, "-m", "ticketflow", "worker"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "WORKER_PROCESSING_GUARANTEE" in done.stderr
    assert "exactly_once was removed" in done.stderr and "ticket_id" in done.stderr


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(
        version=os.environ.get("TICKETFLOW_KAFKA_VERSION", "4.1.2"),
        cache_dir=_cache_dir(),
        state_dir=tmp_path / "own-broker",
        port=free_port(),
        controller_port=free_port(),
    )
    broker.up()
    yield broker
    broker.down()


def test_broker_stopped_for_20s_mid_stream(
    worker: WorkerProcess, own_broker: LocalKafkaBroker
) -> None:
    config = {"bootstrap.servers": own_broker.bootstrap}
    env = worker.env
    env["KAFKA_BOOTSTRAP_SERVERS"] = own_broker.bootstrap
    create_topics(
        config,
        [env["KAFKA_TOPIC_TICKETS"], env["KAFKA_TOPIC_LABELED"], env["KAFKA_TOPIC_DLQ"]],
        partitions=3,
        replication=1,
    )
    tickets = generate_tickets(1_200, seed=22)
    publish(config, env["KAFKA_TOPIC_TICKETS"], tickets[:600])
    worker.start()
    worker.wait_ready()
    wait_labeled(worker, 200)
    own_broker.down()
    time.sleep(20)
    own_broker.up()
    publish(config, env["KAFKA_TOPIC_TICKETS"], tickets[600:])
    expected = {t["ticket_id"] for t in tickets}
    labeled, dead = account(config, env, expected)
    assert worker.process is not None and worker.process.poll() is None, "worker died"
    report("broker down 20s", len(tickets), labeled, dead, expected)


def test_chromadb_server_down_for_30s(
    worker: WorkerProcess, kafka_config: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    chroma_cmd = [
        str(Path(sys.executable).parent / "chroma"), "run",
        "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip

    def start_chroma() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            chroma_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        assert wait_for_port("127.0.0.1", port, 60), "chroma server did not start"
        return process

    chroma = start_chroma()
    worker.env.update(CHROMA_HOST="127.0.0.1", CHROMA_PORT=str(port))
    tickets = generate_tickets(900, seed=23)
    publish(kafka_config, worker.env["KAFKA_TOPIC_TICKETS"], tickets)
    try:
        worker.start()
        worker.wait_ready()
        wait_labeled(worker, 150)
        os.killpg(chroma.pid, signal.SIGTERM)
        chroma.wait(30)
        outage_started = time.monotonic()
        errors_seen = False
        while time.monotonic() - outage_started < 30:
            text = worker.metrics()
            errors_seen = errors_seen or "ticketflow_vector_store_up 0.0" in text
            assert worker.process is not None and worker.process.poll() is None, worker.tail()
            time.sleep(1)
        stalled_at = labeled_count(worker)
        chroma = start_chroma()
        expected = {t["ticket_id"] for t in tickets}
        labeled, dead = account(kafka_config, worker.env, expected)
        report("ChromaDB down 30s", len(tickets), labeled, dead, expected)
        assert errors_seen, "the outage never showed in ticketflow_vector_store_up"
        print(f"labels published while ChromaDB was down: stalled at {stalled_at:.0f}")
        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=port)
        stored = client.get_collection("tickets").get(ids=sorted(expected), include=[])
        assert set(stored["ids"]) == expected
    finally:
        os.killpg(chroma.pid, signal.SIGTERM)
        chroma.wait(30)


def hostile_payloads(n: int, seed: int = 5) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: random bytes, deep JSON, huge strings, wrong types, odd unicode..."""
    rng = random.Random(seed)
    valid = generate_tickets(n // 10, seed=seed)
    odd = [
        "\u202e",
        "\u200b",
        "\ufeff",
        "\x00",
        "\x1b[31m",
        "𝕏",
        "👩‍💻",
        "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        "é" * 3,
    ]
    payloads: list[tuple[bytes, bytes]] = []
    for i in range(n):
        key = f"h-{i}"
        kind = i % 10
        if kind == 0 and valid:
            ticket = valid.pop()
            ticket["ticket_id"] = key
            ticket["subject"] = (ticket.get("subject") or "") + rng.choice(odd)
            value = encode_event(ticket)
        elif kind == 1:
            value = rng.randbytes(rng.randint(0, 3_000))
        elif kind == 2:
            depth = rng.randint(30, 3_000)
            value = ("[" * depth + "]" * depth).encode()
        elif kind == 3:
            value = json.dumps(
                {"ticket_id": key, "body": "x" * rng.randint(20_001, 300_000)}
            ).encode()
        elif kind == 4:
            value = json.dumps(
                {
                    "ticket_id": key,
                    rng.choice(["subject", "body", "tags"]): rng.choice(
                        [1, 2.5, None, True, {"a": 1}, [[1]]]
                    ),
                }
            ).encode()
        elif kind == 5:
            value = json.dumps(
                {"ticket_id": key, "body": "".join(rng.choice(odd) for _ in range(50))}
            ).encode()
        elif kind == 6:
            value = "".join(chr(rng.randint(0, 31)) for _ in range(rng.randint(1, 200))).encode()
        elif kind == 7:
            value = json.dumps(rng.choice([[], 0, "str", None, 1e308, {"ticket_id": []}])).encode()
        elif kind == 8:
            value = json.dumps(
                {
                    "ticket_id": key,
                    "subject": "s",
                    "tags": [str(j) for j in range(rng.randint(51, 5_000))],
                }
            ).encode()
        else:
            value = b'{"ticket_id": "' + key.encode() + b'", "body": "' + rng.randbytes(50) + b'"}'
        payloads.append((key.encode(), value))
    return payloads


def test_10000_hostile_payloads_are_all_accounted_for(
    worker: WorkerProcess, kafka_config: dict[str, str]
) -> None:
    payloads = hostile_payloads(10_000)
    worker.start()
    worker.wait_ready()
    produce_raw(kafka_config, worker.env["KAFKA_TOPIC_TICKETS"], payloads)
    expected = {k.decode() for k, _ in payloads}
    labeled, dead = account(kafka_config, worker.env, expected)
    report("hostile input", len(payloads), labeled, dead, expected)
    assert worker.process is not None and worker.process.poll() is None, "worker crashed"
    assert len(worker.starts) == 1
    deadline = time.monotonic() + 30
    while True:
        lags = [
            float(line.split()[-1])
            for line in worker.metrics().splitlines()
            if line.startswith("ticketflow_consumer_lag{")
        ]
        if lags and max(lags) == 0:
            break
        assert time.monotonic() < deadline, f"lag did not return to 0: {lags}"
        time.sleep(2)
    reasons = Counter(
        r["error_type"]
        for r in consume(
            kafka_config, worker.env["KAFKA_TOPIC_DLQ"], max_messages=None, timeout_s=3
        )
    )
    print(f"dead-letter reasons: {dict(reasons)}; lag back to 0")
