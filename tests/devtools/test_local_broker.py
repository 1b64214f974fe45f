"""The local jar-based KRaft broker: real produce/consume, restart keeps data, failures explain."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from tests.fixtures.kafka import DEFAULT_KAFKA_VERSION, TopicNamesFactory
from ticketflow.devtools.kafka.local_broker import (
    BrokerError,
    BrokerStatus,
    LocalKafkaBroker,
    free_port,
    wait_for_port,
)

pytestmark = pytest.mark.integration


def _cache_dir() -> Path:
    override = os.environ.get("TICKETFLOW_CACHE_DIR")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "ticketflow"


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors: list[object] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0, "message not delivered within 30s"
    assert errors == [None]


def _consume_one(bootstrap: str, topic: str, timeout: float = 30.0) -> tuple[bytes, bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            key, value = msg.key(), msg.value()
            assert isinstance(key, bytes) and isinstance(value, bytes)
            return key, value
        raise AssertionError(f"no message on {topic} within {timeout}s")
    finally:
        consumer.close()


def test_session_broker_round_trip(kafka_bootstrap: str, topic_names: TopicNamesFactory) -> None:
    names = topic_names()
    _produce(kafka_bootstrap, names.tickets, b"k1", b'{"hello": "kafka"}')
    assert _consume_one(kafka_bootstrap, names.tickets) == (b"k1", b'{"hello": "kafka"}')


def test_session_broker_auto_creates_topics(kafka_bootstrap: str) -> None:
    """Faust relies on auto-created internal topics."""
    topic = f"auto-created-{uuid.uuid4().hex[:12]}"
    _produce(kafka_bootstrap, topic, b"k", b"v")
    assert _consume_one(kafka_bootstrap, topic) == (b"k", b"v")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(
        version=DEFAULT_KAFKA_VERSION,
        cache_dir=_cache_dir(),
        state_dir=tmp_path / "state",
        port=free_port(),
        controller_port=free_port(),
        heap="256m",
    )
    yield broker
    broker.down()


@pytest.mark.slow
def test_restart_keeps_data_and_status_tracks_process(own_broker: LocalKafkaBroker) -> None:
    broker = own_broker
    stopped = broker.status()
    assert stopped == BrokerStatus(
        running=False,
        pid=None,
        bootstrap=broker.bootstrap,
        data_dir=broker.state_dir / "kafka" / "data",
        log_file=broker.state_dir / "kafka" / "broker.log",
    )

    first = broker.up()
    assert first.running and first.pid is not None
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert (first.data_dir / "meta.properties").is_file()
    assert broker.up() == first, "up() on a running broker must be a no-op"

    topic = f"survivor-{uuid.uuid4().hex[:8]}"
    _produce(broker.bootstrap, topic, b"key", b"kept across restarts")

    down = broker.down()
    assert not down.running and down.pid is None
    assert not wait_for_port("127.0.0.1", broker.port, 0.5)
    assert broker.down() == down, "down() on a stopped broker must be fine"
    meta = (first.data_dir / "meta.properties").read_text()

    second = broker.up()
    assert second.running and second.pid not in (None, first.pid)
    assert (first.data_dir / "meta.properties").read_text() == meta, "storage was re-formatted"
    assert _consume_one(broker.bootstrap, topic) == (b"key", b"kept across restarts")


@pytest.mark.slow
def test_process_dying_at_start_reports_log_tail(tmp_path: Path) -> None:
    broker = LocalKafkaBroker(
        version=DEFAULT_KAFKA_VERSION,
        cache_dir=_cache_dir(),
        state_dir=tmp_path / "state",
        port=free_port(),
        controller_port=free_port(),
        heap="1k",  # the JVM refuses to start: "Too small maximum heap"
    )
    with pytest.raises(BrokerError, match=r"(?s)exited with code.*heap"):
        broker.up(timeout=60)
    status = broker.status()
    assert not status.running and status.pid is None
    assert not (broker.state_dir / "kafka" / "broker.pid").exists()


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        broker = LocalKafkaBroker(
            version=DEFAULT_KAFKA_VERSION,
            cache_dir=_cache_dir(),
            state_dir=tmp_path / "state",
            port=taken,
            controller_port=free_port(),
        )
        with pytest.raises(BrokerError, match=f"127.0.0.1:{taken} is already in use"):
            broker.up(timeout=30)
        assert broker.status().pid is None


def test_missing_maven_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    broker = LocalKafkaBroker(
        version="0.0.0-not-cached",
        cache_dir=tmp_path / "cache",
        state_dir=tmp_path / "state",
        port=free_port(),
        controller_port=free_port(),
    )
    with pytest.raises(BrokerError, match=r"not found on PATH.*install"):
        broker.ensure_jars()
