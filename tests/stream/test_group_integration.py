"""The consumer group changes while a backlog drains, as autoscaling changes it: a second and a
third worker join, one leaves by SIGTERM (a scale-down), one is SIGKILLed (a lost node). Every
ticket must come out labelled or dead-lettered; duplicates are bounded by the batches the
killed worker had in flight.

The workers share a ChromaDB server (the embedded store is one process only) and the real
broker; each has its own metrics port and state directory. docs/deploying.md records the
numbers this prints.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.chroma import ChromaServer
from tests.fixtures.pipeline import WorkerProcess
from tests.stream.test_faults_integration import (
    account,
    labeled_count,
    publish,
    report,
    wait_labeled,
)
from ticketflow.devtools.kafka.local_broker import free_port
from ticketflow.devtools.sample import generate_tickets

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.timeout(1800),
]

BATCH_MAX = 32
TICKETS = 3_000


def member(env: dict[str, str], tmp_path: Path, name: str) -> WorkerProcess:
    port = free_port()
    own = {
        **env,
        "METRICS_PORT": str(port),
        "STATE_DIR": str(tmp_path / f"state-{name}"),
        "BROKER_CLIENT_ID": f"worker-{name}",
        "WORKER_BATCH_MAX": str(BATCH_MAX),
        # The shipped ConfigMap's timeout (k8s/base/configmap.yaml): a SIGKILLed member's
        # partitions wait this long before the group takes them over.
        "BROKER_SESSION_TIMEOUT": "10",
    }
    return WorkerProcess(env=own, log=tmp_path / f"worker-{name}.log", port=port)


def total(workers: list[WorkerProcess]) -> float:
    return sum(labeled_count(w) for w in workers)


def wait_total(workers: list[WorkerProcess], at_least: float, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while total(workers) < at_least:
        assert time.monotonic() < deadline, "\n\n".join(w.tail(30) for w in workers)
        time.sleep(0.5)


def test_join_leave_and_kill_while_a_backlog_drains(
    worker_env: dict[str, str],
    chroma_server: ChromaServer,
    kafka_config: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {**worker_env, **chroma_server.env()}
    env.pop("CHROMA_PATH", None)
    tickets = generate_tickets(TICKETS, seed=33)
    publish(kafka_config, env["KAFKA_TOPIC_TICKETS"], tickets)
    first, second, third = (member(env, tmp_path, name) for name in ("a", "b", "c"))
    workers = [first, second, third]
    try:
        first.start()
        first.wait_ready()
        wait_labeled(first, TICKETS // 10)
        second.start()  # a scale-up: the group rebalances onto two members
        second.wait_ready()
        wait_total(workers, TICKETS // 4)
        third.start()
        third.wait_ready()
        wait_total(workers, TICKETS // 2)
        second.stop()  # a scale-down: SIGTERM, the member leaves the group cleanly
        assert second.process is not None and second.process.returncode == 0, second.tail()
        wait_total(workers, TICKETS * 2 // 3)
        third.kill()  # a lost node: its partitions wait for the session timeout
        expected = {t["ticket_id"] for t in tickets}
        labeled, dead = account(kafka_config, env, expected)
    finally:
        for worker in workers:
            worker.stop()
    duplicates = report("join, join, SIGTERM leave, SIGKILL", TICKETS, labeled, dead, expected)
    # Only the killed member's in-flight batches are read again: the one being published and
    # at most one more whose commit was on its way (test_faults_integration's bound per kill).
    assert duplicates <= 2 * BATCH_MAX
