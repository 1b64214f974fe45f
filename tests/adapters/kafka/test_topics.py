"""Idempotent topic administration against the session's real broker."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.kafka import TopicNamesFactory
from ticketflow.adapters.kafka.topics import (
    TopicAdminError,
    create_topics,
    delete_topics,
    describe_partitions,
    list_topics,
)

pytestmark = pytest.mark.integration


def test_create_is_idempotent_and_sets_partitions(kafka_config: dict[str, str]) -> None:
    names = [f"topics-a-{uuid.uuid4().hex[:10]}", f"topics-b-{uuid.uuid4().hex[:10]}"]
    try:
        assert create_topics(kafka_config, names, partitions=3, replication=1) == {
            names[0]: "created",
            names[1]: "created",
        }
        assert create_topics(kafka_config, names, partitions=3, replication=1) == {
            names[0]: "exists",
            names[1]: "exists",
        }
        assert all(describe_partitions(kafka_config, name) == 3 for name in names)
        assert set(names) <= list_topics(kafka_config)
    finally:
        delete_topics(kafka_config, names)


def test_partition_count_as_requested_and_mixed_outcome(kafka_config: dict[str, str]) -> None:
    old, new = f"topics-old-{uuid.uuid4().hex[:10]}", f"topics-new-{uuid.uuid4().hex[:10]}"
    try:
        assert create_topics(kafka_config, [old], partitions=5, replication=1) == {old: "created"}
        outcome = create_topics(kafka_config, [old, new, new], partitions=2, replication=1)
        assert outcome == {old: "exists", new: "created"}
        assert describe_partitions(kafka_config, old) == 5  # existing topic left untouched
        assert describe_partitions(kafka_config, new) == 2
    finally:
        delete_topics(kafka_config, [old, new])


def test_other_errors_raise(kafka_config: dict[str, str]) -> None:
    name = f"topics-rf-{uuid.uuid4().hex[:10]}"
    with pytest.raises(TopicAdminError, match=name):
        create_topics(kafka_config, [name], partitions=1, replication=3)  # one broker only
    with pytest.raises(TopicAdminError, match="not available"):
        describe_partitions(kafka_config, f"never-created-{uuid.uuid4().hex[:10]}")


def test_delete_reports_missing(kafka_config: dict[str, str]) -> None:
    name = f"topics-del-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_config, [name], partitions=1, replication=1)
    assert delete_topics(kafka_config, [name]) == {name: "deleted"}
    missing = f"never-created-{uuid.uuid4().hex[:10]}"
    assert delete_topics(kafka_config, [missing]) == {missing: "missing"}


def test_topic_names_fixture(topic_names: TopicNamesFactory, kafka_config: dict[str, str]) -> None:
    a, b = topic_names(), topic_names("other")
    assert len({*a.all(), *b.all()}) == 6
    assert a.tickets.startswith("t-tickets-") and b.dlq.startswith("other-tickets-dlq-")
    assert all(describe_partitions(kafka_config, name) == 3 for name in a.all())
    assert set(a.all()) | set(b.all()) <= list_topics(kafka_config)
