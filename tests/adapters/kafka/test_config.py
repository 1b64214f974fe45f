"""One Kafka connection config, rendered for confluent-kafka and for Faust."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from ticketflow.adapters.kafka.config import KafkaConnection, consumer_config
from ticketflow.config import Settings

pytestmark = pytest.mark.unit


def test_plaintext_renders_for_both_clients() -> None:
    connection = KafkaConnection(bootstrap_servers="a:9092, b:9092")
    assert connection.librdkafka() == {
        "bootstrap.servers": "a:9092, b:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert connection.faust_broker() == ["kafka://a:9092", "kafka://b:9092"]
    assert connection.faust_credentials() is None


def test_sasl_renders_the_same_login_for_both_clients() -> None:
    connection = KafkaConnection(
        bootstrap_servers="k:9094",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password="s3cret",
    )
    config = connection.librdkafka()
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("alice", "s3cret")
    credentials = connection.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("alice", "s3cret")
    assert "s3cret" not in repr(connection)


def test_settings_build_the_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bob")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "pw")
    settings = Settings()
    assert settings.kafka_connection() == KafkaConnection(
        bootstrap_servers="broker:9092",
        security_protocol="SASL_SSL",
        sasl_username="bob",
        sasl_password="pw",
    )
    assert settings.kafka_client_config() == settings.kafka_connection().librdkafka()


def test_consumer_config_adds_the_consumers_keys_to_the_connection() -> None:
    base = KafkaConnection(
        bootstrap_servers="a:9093", security_protocol="SASL_SSL", sasl_password="pw"
    ).librdkafka()
    assert consumer_config(base, group_id="g") == {
        **base,
        "group.id": "g",
        "enable.auto.commit": False,
    }
    assert consumer_config(
        base, group_id="g", offset_reset="earliest", auto_commit=True, client_id="monitor"
    ) == {
        **base,
        "group.id": "g",
        "enable.auto.commit": True,
        "auto.offset.reset": "earliest",
        "client.id": "monitor",
    }
    assert "group.id" not in base  # the connection's own dict is not changed
