"""FinishedOnly on Faust's own consumer and message types (the consumer is built, never
started: no broker is contacted)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import faust
import faust.streams
import pytest
from faust.events import Event
from faust.types.tuples import TP, ConsumerMessage

from ticketflow.stream.offsets import FinishedOnly

pytestmark = pytest.mark.unit

TICKETS = "tickets"
TP0 = TP(TICKETS, 0)


@pytest.fixture
def consumer() -> Iterator[Any]:
    app = faust.App("offsets-test", broker="kafka://127.0.0.1:1", store="memory://")
    topic = app.topic(TICKETS, key_type=bytes, value_type=bytes)
    app.topics.add(topic)
    # Faust fills this at assignment (Conductor._update_indices); the test has no broker.
    app.topics.acking_topics.add(TICKETS)
    yield app.consumer


def delivered(offset: int, topic: str = TICKETS) -> ConsumerMessage:
    """A message as the stream holds it: one reference, released by its ack."""
    message = ConsumerMessage(topic, 0, offset, 0.0, 0, None, b"k", b"v", None)
    message.incref()
    return message


def test_faust_commits_past_unlabelled_offsets_from_one_skipped_ack(consumer: Any) -> None:
    """The premise: nothing committed yet, offsets 0-6 in a batch a rebalance cleared, and the
    stream skips (and acks) offset 7, fetched before the rebalance. Faust would commit 8."""
    delivered(7).ack(consumer)
    assert consumer._new_offset(TP0) == 8


def test_a_message_the_worker_did_not_finish_is_not_committable(consumer: Any) -> None:
    guard = FinishedOnly(consumer, {TICKETS})
    skipped = delivered(7)
    skipped.ack(consumer)
    assert consumer._new_offset(TP0) is None
    assert guard.refused == 1 and not skipped.acked

    batch = [delivered(offset) for offset in range(8)]
    guard.finished(batch)
    for message in batch:
        message.ack(consumer)
    assert consumer._new_offset(TP0) == 8


def test_other_topics_are_acked_as_before(consumer: Any) -> None:
    FinishedOnly(consumer, {TICKETS})
    consumer.app.topics.acking_topics.add("other")
    delivered(0, topic="other").ack(consumer)
    assert consumer._new_offset(TP("other", 0)) == 1


async def take_one_batch(app: Any, messages: list[ConsumerMessage]) -> list[int]:
    """Messages through a real Faust stream's take_events, as the worker's agent reads
    them; the batch's events are acked the way the worker acks them."""
    app.flow_control.resume()
    channel = app.channel()
    stream = app.stream(channel)
    for message in messages:
        await channel.put(Event(app, message.key, message.value, {}, message))
    offsets: list[int] = []
    async for events in stream.take_events(10, within=0.2):
        offsets = [e.message.offset for e in events]
        break  # take_events acks the batch as the generator closes
    return offsets


@pytest.mark.parametrize("iterator", ["cython", "python"])
@pytest.mark.parametrize("guarded", [False, True])
def test_a_message_fetched_before_a_rebalance(
    consumer: Any, monkeypatch: pytest.MonkeyPatch, iterator: str, guarded: bool
) -> None:
    """Offset 7 was fetched in generation 1 and is read in generation 2: the stream skips it.
    Faust's pure-Python iterator also acks it; its Cython one does not. With the guard, neither
    path makes it committable."""
    if iterator == "python":
        monkeypatch.setattr(faust.streams, "_CStreamIterator", None)
    elif getattr(faust.streams, "_CStreamIterator", None) is None:
        pytest.fail("faust's Cython stream iterator is not installed")
    app = consumer.app
    app.consumer_generation_id = 2
    guard = FinishedOnly(consumer, {TICKETS}) if guarded else None
    stale = ConsumerMessage(TICKETS, 0, 7, 0.0, 0, None, b"k", b"v", None, generation_id=1)
    fresh = ConsumerMessage(TICKETS, 0, 0, 0.0, 0, None, b"k", b"v", None, generation_id=2)
    for message in (stale, fresh):
        message.incref()  # the Conductor's reference for the one stream it feeds
    if guard is not None:
        guard.finished([fresh])

    assert asyncio.run(asyncio.wait_for(take_one_batch(app, [stale, fresh]), 10)) == [0]
    skipped_and_acked = iterator == "python" and not guarded
    assert stale.acked is skipped_and_acked
    assert consumer._new_offset(TP0) == 1
    assert sorted(consumer._acked[TP0]) == ([7] if skipped_and_acked else [])
