"""Authenticated Kafka: a local broker with a SCRAM listener; right and wrong credentials."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.kafka import _cache_dir
from ticketflow.adapters.kafka.clients import consume, produce_raw
from ticketflow.adapters.kafka.errors import KafkaSetupError
from ticketflow.adapters.kafka.topics import create_topics
from ticketflow.config import Settings
from ticketflow.devtools.kafka.local_broker import LocalKafkaBroker, ScramListener, free_port

pytestmark = [pytest.mark.integration]

USER, PASSWORD = "alice", "alice-s3cret"


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(
        version="4.1.2",
        cache_dir=_cache_dir(),
        state_dir=tmp_path_factory.mktemp("scram"),
        port=free_port(),
        controller_port=free_port(),
        scram=ScramListener(port=free_port(), users={USER: PASSWORD}),
    )
    broker.up()
    yield broker
    broker.down()


def sasl_settings(broker: LocalKafkaBroker, mechanism: str, password: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka_bootstrap_servers=broker.sasl_bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username=USER,
        kafka_sasl_password=password,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_right_credentials_work(scram_broker: LocalKafkaBroker, mechanism: str) -> None:
    config = sasl_settings(scram_broker, mechanism, PASSWORD).kafka_client_config()
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    assert create_topics(config, [topic], partitions=1, replication=1) == {topic: "created"}
    assert produce_raw(config, topic, [(b"k", b'{"ticket_id": "S1"}')]) == 1
    records = list(consume(config, topic, max_messages=1, timeout_s=20))
    assert records == [{"ticket_id": "S1"}]


@pytest.mark.parametrize("client", ["producer", "consumer", "admin"])
def test_wrong_password_fails_fast_and_readably(
    scram_broker: LocalKafkaBroker, client: str
) -> None:
    config = sasl_settings(scram_broker, "SCRAM-SHA-512", "wrong").kafka_client_config()
    started = time.monotonic()
    with pytest.raises(KafkaSetupError) as caught:
        if client == "producer":
            produce_raw(config, "any-topic", [(None, b"{}")])
        elif client == "consumer":
            list(consume(config, "any-topic", max_messages=1, timeout_s=30))
        else:
            create_topics(config, ["any-topic"], partitions=1, replication=1, timeout=30)
    elapsed = time.monotonic() - started
    print(f"\n{client}: wrong password refused in {elapsed:.2f}s: {caught.value}")
    assert elapsed < 10
    assert "Authentication failed" in str(caught.value) or "SASL" in str(caught.value)
    assert "wrong" not in str(caught.value)  # the password is never echoed


def test_secrets_are_masked_in_settings_repr(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka_sasl_password="hunter2",  # type: ignore[arg-type]
        chroma_auth_token="tok-123",  # type: ignore[arg-type]
    )
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert "tok-123" not in repr(settings)
    assert settings.kafka_client_config().get("sasl.password") == "hunter2"
