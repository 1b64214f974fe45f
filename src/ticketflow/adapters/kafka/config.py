"""One Kafka connection, rendered for each client library.

confluent-kafka (librdkafka) takes a flat dict of dotted keys; Faust (aiokafka) takes broker
URLs and a credentials object. Both come from this one value, so the worker, the CLI, the
monitor and the reloader can never disagree on where the cluster is or how to log in.
:func:`consumer_config` adds a consumer's own keys (group, offsets, client id) to it, so no
caller assembles those by hand.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to authenticate. ``bootstrap_servers``: ``host:port,...``."""

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def __repr__(self) -> str:  # never print the password
        hidden = "***" if self.sasl_password else None
        return (
            f"KafkaConnection(bootstrap_servers={self.bootstrap_servers!r}, "
            f"security_protocol={self.security_protocol!r}, sasl_password={hidden!r})"
        )

    @property
    def servers(self) -> list[str]:
        return [host.strip() for host in self.bootstrap_servers.split(",") if host.strip()]

    def librdkafka(self) -> dict[str, str]:
        """confluent-kafka client settings (security included); callers add their own keys."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
        }
        config.update({key: str(value) for key, value in optional.items() if value})
        return config

    def faust_broker(self) -> list[str]:
        """Faust's ``broker`` argument."""
        return [f"kafka://{host}" for host in self.servers]

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (aiokafka), or None for PLAINTEXT."""
        import faust

        protocol = self.security_protocol
        if protocol == "PLAINTEXT":
            return None
        context = None
        if protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
            if self.ssl_certfile:
                context.load_cert_chain(
                    str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
                )
        if protocol == "SSL":
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password,
            mechanism=self.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )


OffsetReset = Literal["earliest", "latest"]


def consumer_config(
    base: Mapping[str, Any],
    *,
    group_id: str,
    offset_reset: OffsetReset | None = None,
    auto_commit: bool = False,
    client_id: str | None = None,
) -> dict[str, Any]:
    """A librdkafka consumer's settings: ``base`` (:meth:`KafkaConnection.librdkafka`, i.e.
    servers and security) plus the consumer's group, where it starts without a committed
    offset (librdkafka's default, ``latest``, when None), whether it commits by itself, and a
    client id for the broker's logs. Callers add keys only their client needs on top.
    """
    config: dict[str, Any] = {**base, "group.id": group_id, "enable.auto.commit": auto_commit}
    if offset_reset is not None:
        config["auto.offset.reset"] = offset_reset
    if client_id is not None:
        config["client.id"] = client_id
    return config
