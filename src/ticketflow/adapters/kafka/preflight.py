"""Is the broker there? Asked once, before a command does anything that needs it.

Without this, librdkafka retries an unreachable broker for as long as each call's timeout
allows: a producer queues every message and waits for its flush, a consumer polls quietly and
reports zero messages, an admin call waits out its own timeout per topic. One metadata request
with a short deadline answers the question for all of them, and the error names the servers
and what to change.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from ticketflow.adapters.kafka.errors import trapped

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_HINT", "BrokerUnreachableError", "check_broker"]

DEFAULT_HINT = "set KAFKA_BOOTSTRAP_SERVERS to a reachable cluster"
# One metadata request per slice, so the error callbacks are served in between.
_SLICE_S = 0.5
# librdkafka's "after 0ms in state CONNECT" tail says nothing to a user.
_STATE_TAIL = re.compile(r"\s*\(after \d+ms in state \w+\)")
# "127.0.0.1:1/bootstrap: " or "kafka:9092/1: ": which connection; the message names servers.
_BROKER_PREFIX = re.compile(r"^\S+/(?:bootstrap|\d+): ")


class BrokerUnreachableError(ConnectionError):
    """No broker answered a metadata request in time; the message is one line for the user."""


def _reason(error: KafkaError | None) -> str:
    if error is None:
        return "no answer"
    text = _BROKER_PREFIX.sub("", error.str())
    return _STATE_TAIL.sub("", text).strip() or error.name()


def check_broker(
    client_config: Mapping[str, Any],
    timeout_s: float = 5.0,
    *,
    hint: str = DEFAULT_HINT,
    down_grace_s: float = 1.0,
) -> None:
    """Return when a broker of ``client_config`` answers a metadata request.

    Raises :class:`BrokerUnreachableError` after ``timeout_s``, or sooner: once librdkafka has
    found every bootstrap server down (refused, unresolvable) and ``down_grace_s`` has passed,
    since a refused connection is an answer too, and waiting on it only delays the error.
    Raises :class:`~ticketflow.adapters.kafka.errors.KafkaSetupError` when the brokers answer
    but refuse the credentials or the TLS setup.
    """
    servers = str(client_config.get("bootstrap.servers") or "(no bootstrap.servers)")
    config, trap = trapped(client_config)
    admin = AdminClient(config)
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.05, min(_SLICE_S, left)))
        except KafkaException as exc:
            logger.debug("metadata request to %s failed: %s", servers, exc)
        else:
            trap.check()
            logger.debug("broker at %s answered", servers)
            return
        admin.poll(0)
        trap.check()
        elapsed = time.monotonic() - started
        if elapsed >= timeout_s or (trap.all_brokers_down and elapsed >= down_grace_s):
            break
    raise BrokerUnreachableError(
        f"cannot reach Kafka at {servers} ({_reason(trap.transient)}; "
        f"tried for {time.monotonic() - started:.0f} s): {hint}"
    )
