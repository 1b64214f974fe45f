"""Consumer-group lag watched by the monitor (monitoring/lag.py), its gauge, and the worker's
own lag gauge. Reading the lag from the broker: tests/adapters/kafka/test_lag.py.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from faust.types import TP
from prometheus_client import generate_latest

from tests.adapters.kafka.test_lag import produce, transient
from tests.fixtures.kafka import TopicNamesFactory
from ticketflow.adapters.kafka.lag import GroupLagReader, PartitionLag
from ticketflow.config import Settings
from ticketflow.monitoring.drift_metrics import MonitorMetrics
from ticketflow.monitoring.lag import watch_group_lag
from ticketflow.stream.metrics import WorkerMetrics


def lag_lines(metrics: MonitorMetrics) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {line for line in text.splitlines() if line.startswith("ticketflow_consumergroup_lag{")}


@pytest.mark.unit
def test_group_lag_gauge_follows_the_last_reading() -> None:
    group, topic = "workers", "tickets"
    metrics = MonitorMetrics()
    metrics.set_group_lag(
        group,
        [
            PartitionLag(topic, 0, 4, 10, 6),
            PartitionLag(topic, 1, None, 5, 5),
            PartitionLag(topic, 2, 0, 3, 3),
        ],
    )
    assert lag_lines(metrics) == {
        f'ticketflow_consumergroup_lag{{group="{group}",partition="{p}",topic="{topic}"}} {v}'
        for p, v in ((0, 6.0), (1, 5.0), (2, 3.0))
    }
    # A partition that is no longer in the reading loses its series; the rest are updated.
    metrics.set_group_lag(group, [PartitionLag(topic, 0, 10, 10, 0)])
    assert lag_lines(metrics) == {
        f'ticketflow_consumergroup_lag{{group="{group}",partition="0",topic="{topic}"}} 0.0'
    }


@pytest.mark.integration
def test_lag_watch_survives_failed_reads(
    kafka_config: dict[str, str], topic_names: TopicNamesFactory
) -> None:
    topic = topic_names("lag").tickets
    group = f"lag-group-{uuid.uuid4().hex[:8]}"
    produce(kafka_config, topic, {1: 2})
    reader = GroupLagReader(kafka_config, group=group, topic=topic, timeout_s=5.0)
    missing_topic = f"missing-{uuid.uuid4().hex}"
    missing = GroupLagReader(kafka_config, group=group, topic=missing_topic)
    calls = 0
    published: list[Sequence[PartitionLag]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> Sequence[PartitionLag]:
        # The first read fails (a topic that does not exist), the next ones work.
        nonlocal calls
        calls += 1
        return missing.read() if calls == 1 else reader.read()

    def publish(lags: Sequence[PartitionLag]) -> None:
        published.append(lags)
        if len(published) == 2:
            stop.set()

    thread = threading.Thread(
        target=watch_group_lag,
        args=(read, publish),
        kwargs={"interval_s": 0.1, "stop": stop, "on_error": errors.append},
    )
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert isinstance(errors[0], LookupError), errors
    # then at most a fresh broker's retriable answers
    assert all(transient(e) for e in errors[1:]), errors
    assert [lag.lag for lag in published[-1]] == [0, 2, 0]
    # reading the lag of a missing topic did not create it (brokers may auto-create)
    assert missing_topic not in AdminClient(kafka_config).list_topics(timeout=10).topics


@pytest.mark.unit
def test_worker_forgets_the_lag_of_revoked_partitions(tmp_path: Path) -> None:
    from ticketflow.stream.app import create_app

    settings = Settings(state_dir=tmp_path, kafka_topic_tickets="tickets")
    metrics = WorkerMetrics()
    app = create_app(settings, metrics=metrics)
    for partition in (0, 1):
        metrics.consumer_lag.labels(topic="tickets", partition=str(partition)).set(7)

    # TP(tickets, 2) was never reported by this worker: revoking it is no error.
    asyncio.run(app.on_partitions_revoked.send({TP("tickets", 0), TP("tickets", 2)}))

    text = generate_latest(metrics.registry).decode()
    reported = [line for line in text.splitlines() if line.startswith("ticketflow_consumer_lag{")]
    assert reported == ['ticketflow_consumer_lag{partition="1",topic="tickets"} 7.0']
