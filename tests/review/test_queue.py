"""The review queue's snapshot: what it reports after each read, and when its background
refresher reads the store (the desk in use, or its gauges scraped), on a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pytest

from ticketflow.adapters.store import StoredRecord
from ticketflow.review.queue import (
    FULL_READ_S,
    IDLE_AFTER_S,
    REST_FACTOR,
    WATCHED_FOR_S,
    WATCHED_MAX_AGE_S,
    Order,
    QueuePage,
    ReviewQueue,
)

pytestmark = pytest.mark.unit

TARGETS = ("queue", "priority")


def held(i: int, *unsure: str) -> StoredRecord:
    metadata: dict[str, object] = {
        "needs_review": True,
        "label_source": "model",
        "processed_at": 1_000.0 + i,
        "review_margin": i / 100,
        "queue": "Billing",
        "queue_probability": 0.5,
        "priority": "low",
        "priority_probability": 0.6,
    }
    for target in unsure:
        metadata[f"{target}_needs_review"] = True
    return StoredRecord(ticket_id=f"t{i}", metadata=metadata)


@dataclass
class Store:
    """Held records by id; counts the ids whose metadata was read. ``slow``: the clock
    advances that much per read, as a large store's does."""

    held: dict[str, StoredRecord]
    clock: Clock | None = None
    slow: float = 0.0
    read: list[str] = field(default_factory=list)

    def held_ids(self) -> list[str]:
        return list(self.held)

    def records(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        self.read.extend(ids)
        if self.clock is not None:
            self.clock.now += self.slow
        return {i: self.held[i] for i in ids if i in self.held}


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reports:
    pages: list[QueuePage] = field(default_factory=list)

    def __call__(self, page: QueuePage) -> None:
        self.pages.append(page)


def make(
    targets: Callable[[], Sequence[str]] = lambda: TARGETS,
) -> tuple[ReviewQueue, Store, Clock, Reports]:
    clock, reports = Clock(1_000.0), Reports()
    records = [held(0, "queue"), held(1, "queue", "priority"), held(2, "priority")]
    store = Store({r.ticket_id: r for r in records}, clock)
    queue = ReviewQueue(store, targets, on_refresh=reports, clock=clock)
    return queue, store, clock, reports


def test_each_read_reports_the_whole_queue() -> None:
    queue, store, _, reports = make()
    page = queue.page(target="priority", limit=1)  # the first page reads the store
    assert store.read == ["t0", "t1", "t2"] and [t.ticket_id for t in page.items] == ["t1"]
    assert page.total == 2
    (report,) = reports.pages
    assert (report.total, report.counts, report.items) == (3, {"queue": 2, "priority": 2}, [])
    assert report.refresh_s == page.refresh_s >= 0.0
    queue.answered("t1")
    queue.refresh()
    assert (reports.pages[-1].total, reports.pages[-1].counts) == (2, {"queue": 1, "priority": 1})


def test_the_refresher_reads_while_the_desk_is_used_and_rests_after() -> None:
    queue, _, clock, _ = make()
    assert not queue.due()  # nobody asked, nothing scraped
    queue.page()
    clock.now += IDLE_AFTER_S - 1
    assert queue.due()
    clock.now += 2
    assert not queue.due()


def test_a_refresh_is_not_a_visit_to_the_desk() -> None:
    """Its report to the gauges reads the snapshot too, but must not keep the refresher busy
    for ever."""
    queue, _, clock, reports = make()
    queue.refresh()
    clock.now += 1
    assert reports.pages and not queue.due()


def test_a_scrape_keeps_the_gauges_fresh_at_a_slow_pace() -> None:
    queue, _, clock, _ = make()
    queue.watched()
    assert queue.due()  # no snapshot yet: the first scrape gets one
    queue.refresh()
    clock.now += WATCHED_MAX_AGE_S - 1
    queue.watched()
    scraped = clock.now
    assert not queue.due()  # young enough
    clock.now += 1
    assert queue.due()
    queue.refresh()
    clock.now = scraped + WATCHED_FOR_S - 1
    assert queue.due()  # old, and scraped a while ago
    clock.now = scraped + WATCHED_FOR_S + 1  # no scrape since: Prometheus is gone
    assert not queue.due()


def test_a_read_takes_the_metadata_of_new_tickets_only() -> None:
    queue, store, clock, _ = make()
    queue.refresh()
    store.read.clear()
    del store.held["t0"]  # answered elsewhere
    store.held["t3"] = held(3, "queue")  # labelled since
    changed = held(2, "priority")
    store.held["t2"] = replace(changed, metadata={**changed.metadata, "review_margin": 0.9})
    clock.now += 5
    queue.refresh()
    assert store.read == ["t3"]
    page = queue.page(limit=10)
    assert sorted(t.ticket_id for t in page.items) == ["t1", "t2", "t3"]
    assert next(t for t in page.items if t.ticket_id == "t2").margin == 0.02  # not read again
    clock.now += FULL_READ_S
    queue.refresh()
    assert store.read == ["t3", "t1", "t2", "t3"]  # every held record, now and then
    assert next(t for t in queue.page(limit=10).items if t.ticket_id == "t2").margin == 0.9


def test_a_new_model_reads_every_held_record_again() -> None:
    served = {"targets": TARGETS}
    queue, store, _, _ = make(lambda: served["targets"])
    queue.refresh()
    store.read.clear()
    served["targets"] = ("queue",)
    queue.refresh()
    assert store.read == ["t0", "t1", "t2"]
    assert queue.page().counts == {"queue": 2}


def test_a_ticket_answered_between_the_two_reads_is_left_out() -> None:
    queue, store, _, _ = make()
    answered = store.held["t1"]
    store.held["t1"] = replace(answered, metadata={**answered.metadata, "label_source": "human"})
    queue.refresh()
    assert [t.ticket_id for t in queue.page().items] == ["t0", "t2"]


def test_the_refresher_rests_longer_after_a_slow_read() -> None:
    queue, store, clock, _ = make()
    store.slow = 3.0  # a 3 s read: the next one waits (1 + REST_FACTOR) * 3 s, not max_age_s
    queue.page()
    assert queue.due() is False
    clock.now += (1 + REST_FACTOR) * 3.0 - 3.0 - 0.5  # counted from the read's start
    assert not queue.due()
    clock.now += 1
    assert queue.due()


def test_pages_filter_order_and_count_without_the_tickets_answered_here() -> None:
    queue, store, _, _ = make()
    other = held(3, "priority")
    store.held["t3"] = replace(other, metadata={**other.metadata, "priority": "high"})
    assert [t.ticket_id for t in queue.page().items] == ["t0", "t1", "t2", "t3"]  # margin
    newest_first = held(4, "queue")
    store.held["t4"] = replace(
        newest_first, metadata={**newest_first.metadata, "processed_at": 1.0}
    )
    queue.refresh()
    assert [t.ticket_id for t in queue.page(order=Order.OLDEST, limit=2).items] == ["t4", "t0"]
    queue.answered("t1")
    page = queue.page(target="priority")
    assert ([t.ticket_id for t in page.items], page.total) == (["t2", "t3"], 2)
    page = queue.page(target="priority", label="high", limit=1)
    assert ([t.ticket_id for t in page.items], page.total) == (["t3"], 1)
    assert page.counts == {"queue": 2, "priority": 2}  # t1 answered here: out of both
    assert queue.page(label="low").total == 3  # a label of any target (t1 answered here)
    assert queue.page().total == 4 and queue.page(limit=0).items == []
