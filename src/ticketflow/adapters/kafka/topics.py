"""Idempotent Kafka topic administration (confluent-kafka AdminClient)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from ticketflow.adapters.kafka.errors import ErrorTrap, KafkaSetupError, trapped

logger = logging.getLogger(__name__)


class TopicAdminError(RuntimeError):
    """A topic operation failed for a reason other than "already exists"/"does not exist"."""


def _admin(client_config: Mapping[str, str]) -> AdminClient:
    admin, _ = _trapped_admin(client_config)
    return admin


def _trapped_admin(client_config: Mapping[str, str]) -> tuple[AdminClient, ErrorTrap]:
    config, trap = trapped(client_config)
    return AdminClient(config), trap


def _kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def create_topics(
    client_config: dict[str, str],
    names: Sequence[str],
    *,
    partitions: int,
    replication: int,
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Create ``names``; return ``name -> "created" | "exists"``. ``config``: topic
    configuration of new topics (e.g. ``cleanup.policy``).

    A topic that already exists is not an error (its partition count is left as it is);
    any other failure raises :class:`TopicAdminError` naming every failed topic. Returns once
    every topic shows up in the cluster metadata with a leader for each partition, so clients
    can produce/subscribe right away.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    if partitions < 1 or replication < 1:
        raise ValueError("partitions and replication must be >= 1")
    admin, trap = _trapped_admin(client_config)
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication,
                config=dict(config or {}),
            )
            for name in unique
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    outcome: dict[str, str] = {}
    failures: list[str] = []
    for name in unique:
        try:
            trap.wait(futures[name], timeout + 5.0, poll=admin.poll)
        except KafkaSetupError:
            raise
        except Exception as exc:
            err = _kafka_error(exc)
            if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
                continue
            failures.append(f"{name}: {exc}")
            continue
        outcome[name] = "created"
        logger.info("created topic %s (%d partitions, rf %d)", name, partitions, replication)
    if failures:
        raise TopicAdminError("creating topics failed: " + "; ".join(failures))
    _wait_visible(admin, unique, timeout)
    return outcome


def _wait_visible(admin: AdminClient, names: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while True:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        pending = [
            name
            for name in pending
            if (topic := metadata.topics.get(name)) is None
            or topic.error is not None
            or not topic.partitions
            or any(p.leader < 0 for p in topic.partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicAdminError(
                f"topics not visible with leaders after {timeout:.0f}s: {pending}"
            )
        time.sleep(0.1)


def describe_partitions(client_config: dict[str, str], name: str, timeout: float = 10.0) -> int:
    """The partition count of topic ``name``; :class:`TopicAdminError` if it does not exist.

    Never auto-creates the topic (the metadata request asks for all topics).
    """
    metadata = _admin(client_config).list_topics(timeout=timeout)
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None:
        reason = topic.error if topic is not None else "not in metadata"
        raise TopicAdminError(f"topic {name!r} is not available: {reason}")
    return len(topic.partitions)


def list_topics(client_config: dict[str, str], timeout: float = 10.0) -> set[str]:
    """Names of all topics in the cluster (internal ones included)."""
    return set(_admin(client_config).list_topics(timeout=timeout).topics)


def delete_topics(
    client_config: dict[str, str], names: Sequence[str], *, timeout: float = 30.0
) -> dict[str, str]:
    """Delete ``names``; return ``name -> "deleted" | "missing"``; other errors raise."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    # The admin client must outlive the futures: its destruction cancels them.
    admin, trap = _trapped_admin(client_config)
    futures = admin.delete_topics(unique, operation_timeout=timeout, request_timeout=timeout)
    outcome: dict[str, str] = {}
    failures: list[str] = []
    for name in unique:
        try:
            trap.wait(futures[name], timeout + 5.0, poll=admin.poll)
        except KafkaSetupError:
            raise
        except Exception as exc:
            err = _kafka_error(exc)
            if err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                outcome[name] = "missing"
                continue
            failures.append(f"{name}: {exc}")
            continue
        outcome[name] = "deleted"
    if failures:
        raise TopicAdminError("deleting topics failed: " + "; ".join(failures))
    return outcome
