"""The review queue: tickets held for a person and not yet answered, read from the vector store.

The worker writes every labelled ticket with ``needs_review`` (a gate target is unsure), the
per-target flags, the model's top labels and the review margin (:mod:`ticketflow.schemas.store`).
A person's answer (a ``LabelFeedback`` the worker applies) sets ``label_source=human``: the
ticket leaves the queue.

Reading the held records of a large store takes longer than a page may wait, so
:class:`ReviewQueue` keeps a snapshot that a background thread (:meth:`ReviewQueue.start`, run
by the app's lifespan) reads once at start and again every ``max_age_s`` while the desk is in
use; requests read the last snapshot and never wait for a refresh (a request before the first
read is done waits for it). Without the thread, a request that finds the snapshot stale
refreshes it. Answers given through this process leave its queue at once, before the worker
has applied them.

A read costs what the store charges for metadata: at 100,000 records, 30,000 of them held
(docs/api.md), the held ids take about 0.3 s and the metadata of all of them, read by id, about
3 s. So a read takes the held ids and only the metadata of the tickets the last snapshot did
not have; every ``FULL_READ_S`` (or when the served model's targets change) it reads every
held record again. And the refresher rests ``REST_FACTOR`` times as long as its last read
took, so it never takes more than a fifth of a core from the requests.

The queue's gauges (``ticketflow_review_queue_*`` on serve's ``/metrics``) are set by each
refresh. So that they do not freeze while nobody is at the desk (exactly when a queue grows),
a scrape (:meth:`ReviewQueue.watched`) keeps the background thread refreshing, at most every
``WATCHED_MAX_AGE_S``, for ``WATCHED_FOR_S`` after it.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ticketflow.adapters.store import StoredRecord
from ticketflow.schemas import store as layout

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 2.0
IDLE_AFTER_S = 60.0  # no request for this long: the background refresher rests
WATCHED_MAX_AGE_S = 60.0  # the snapshot's age at most while only Prometheus looks
WATCHED_FOR_S = 300.0  # a scrape keeps the gauges fresh this long (scrape intervals < 5 min)
FULL_READ_S = 600.0  # every held record's metadata is read again this often
READ_CHUNK = 1_000  # held records whose metadata is read per store call (by id)
REST_FACTOR = 4.0  # the refresher waits at least 4 times its last read's duration
MAX_LIMIT = 500
# margin-diverse: a ticket's margin counts this much more per ticket of its group (the same
# two most probable labels) ahead of it in the queue, so one confusion between two classes
# cannot fill the first page (docs/learning.md measures the orders).
DIVERSITY_PENALTY = 0.05


class Order(StrEnum):
    MARGIN = "margin"  # most informative first: the smallest margin of the gate
    MARGIN_DIVERSE = "margin-diverse"  # margin first, spread over the labels confused
    OLDEST = "oldest"  # first labelled, first answered


class HeldSource(Protocol):
    def held_ids(self) -> list[str]: ...

    def records(self, ids: Sequence[str]) -> Mapping[str, StoredRecord]: ...


@dataclass(frozen=True)
class HeldTicket:
    """One ticket waiting for a person."""

    ticket_id: str
    processed_at: float
    margin: float
    model_version: str
    predicted: dict[str, str]  # the model's label per target
    probability: dict[str, float]
    unsure: tuple[str, ...]  # targets whose label is below their review cut
    top: dict[str, list[tuple[str, float]]]  # the model's most probable labels per target
    incident_id: str | None = None  # the emerging incident the worker put it in
    audit: bool = False  # held although the gate was sure: the random audit share

    @classmethod
    def of(cls, record: StoredRecord, targets: Sequence[str]) -> HeldTicket:
        metadata = record.metadata
        predicted: dict[str, str] = {}
        probability: dict[str, float] = {}
        for target in targets:
            model = layout.model_label(metadata, target)
            if model is not None:
                predicted[target], probability[target] = model
        return cls(
            ticket_id=record.ticket_id,
            processed_at=float(metadata.get("processed_at", 0.0)),
            margin=layout.review_margin(metadata),
            model_version=str(metadata.get("model_version", "")),
            predicted=predicted,
            probability=probability,
            unsure=tuple(t for t in targets if metadata.get(f"{t}{layout.REVIEW_SUFFIX}")),
            top={t: layout.top_labels(metadata, t) for t in predicted},
            incident_id=layout.incident_id(metadata),
            audit=layout.is_audit(metadata),
        )


def boundary(ticket: HeldTicket) -> tuple[str, ...]:
    """The two labels the model hesitates between, for the first unsure target (the gate's,
    else the first it predicted): tickets near the same class boundary are one group."""
    target = ticket.unsure[0] if ticket.unsure else next(iter(ticket.predicted), None)
    if target is None:
        return ()
    top = [label for label, _ in ticket.top.get(target, [])[:2]]
    if not top:
        top = [ticket.predicted[target]]
    return (target, *sorted(top))


def _margin_key(ticket: HeldTicket) -> tuple[float, float, str]:
    return (ticket.margin, ticket.processed_at, ticket.ticket_id)


def margin_diverse(
    tickets: Iterable[HeldTicket],
    *,
    penalty: float = DIVERSITY_PENALTY,
    group: Callable[[HeldTicket], Hashable] = boundary,
) -> list[HeldTicket]:
    """``tickets`` smallest margin first, each ticket's margin raised by ``penalty`` for every
    ticket of its ``group`` placed before it: a pile of near-identical doubts (one boundary,
    one cluster) takes turns with the rest instead of filling the queue. ``penalty=0`` is the
    margin order."""
    groups: dict[Hashable, list[HeldTicket]] = defaultdict(list)
    for ticket in sorted(tickets, key=_margin_key):
        groups[group(ticket)].append(ticket)
    members = list(groups.values())
    taken = [0] * len(members)
    heap = [(*_margin_key(rows[0]), g) for g, rows in enumerate(members)]
    heapq.heapify(heap)
    ordered: list[HeldTicket] = []
    while heap:
        *_, g = heapq.heappop(heap)
        rows = members[g]
        ordered.append(rows[taken[g]])
        taken[g] += 1
        if taken[g] < len(rows):
            following = rows[taken[g]]
            margin, processed_at, ticket_id = _margin_key(following)
            heapq.heappush(heap, (margin + penalty * taken[g], processed_at, ticket_id, g))
    return ordered


def in_order(tickets: Iterable[HeldTicket], order: Order) -> list[HeldTicket]:
    """The held ``tickets`` as the desk lists them in ``order``, audits first (oldest first):
    they are few (``REVIEW_AUDIT_SHARE``), and by margin they would come last and never be
    answered, though the sample they make is what retraining checks a challenger on."""
    tickets = list(tickets)
    audits = sorted((t for t in tickets if t.audit), key=lambda t: (t.processed_at, t.ticket_id))
    rest = [t for t in tickets if not t.audit]
    if order is Order.MARGIN:
        return audits + sorted(rest, key=_margin_key)
    if order is Order.MARGIN_DIVERSE:
        return audits + margin_diverse(rest)
    return audits + sorted(rest, key=lambda t: (t.processed_at, t.ticket_id))


@dataclass(frozen=True)
class QueuePage:
    items: list[HeldTicket]
    total: int  # held tickets matching the filters
    counts: dict[str, int]  # held tickets per unsure target (over the whole queue)
    refreshed_at: float  # epoch seconds of the snapshot
    refresh_s: float = 0.0  # how long reading that snapshot took


@dataclass(frozen=True)
class _Index:
    """Held tickets sorted in each order and counted once (by the refresher), so that a page
    costs its length, not the queue's."""

    tickets: list[HeldTicket]
    by_id: dict[str, HeldTicket]
    ordered: dict[Order, list[HeldTicket]]
    per_target: dict[str, int]  # unsure target -> tickets
    per_label: dict[tuple[str, str], int]  # (unsure target, its predicted label) -> tickets

    @classmethod
    def of(cls, tickets: list[HeldTicket]) -> _Index:
        per_target, per_label = _counts(tickets)
        ordered = {order: in_order(tickets, order) for order in Order}
        return cls(tickets, {t.ticket_id: t for t in tickets}, ordered, per_target, per_label)


@dataclass
class _Snapshot:
    index: _Index
    refreshed_at: float = 0.0
    monotonic: float = float("-inf")  # when its read began
    took_s: float = 0.0
    targets: tuple[str, ...] = ()
    full_at: float = float("-inf")  # when the last read of every held record began


def _counts(tickets: Iterable[HeldTicket]) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    per_target: Counter[str] = Counter()
    per_label: Counter[tuple[str, str]] = Counter()
    for ticket in tickets:
        for target in ticket.unsure:
            per_target[target] += 1
            label = ticket.predicted.get(target)
            if label is not None:
                per_label[(target, label)] += 1
    return dict(per_target), dict(per_label)


def _matches(ticket: HeldTicket, target: str | None, label: str | None) -> bool:
    if target is None:
        return label is None or label in ticket.predicted.values()
    if target not in ticket.unsure:
        return False
    return label is None or ticket.predicted.get(target) == label


class ReviewQueue:
    """The held tickets of ``store`` for a model predicting ``targets`` (a callable: the served
    model may be swapped), refreshed in the background once older than ``max_age_s``;
    ``on_refresh`` gets the whole queue's counts after each read; ``clock``: monotonic seconds
    (tests give a fake one)."""

    def __init__(
        self,
        store: HeldSource,
        targets: Callable[[], Sequence[str]],
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        on_refresh: Callable[[QueuePage], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.targets = targets
        self.max_age_s = max_age_s
        self.on_refresh = on_refresh
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._answered: dict[str, float] = {}  # ticket id -> when answered here (monotonic)
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._asked = float("-inf")  # when a page was last asked for (monotonic)
        self._scraped = float("-inf")  # when the gauges were last scraped (monotonic)

    def answered(self, ticket_id: str) -> None:
        """``ticket_id`` was answered here: leave it out until the store says so too."""
        with self._lock:
            self._answered[ticket_id] = self._clock()

    def refresh(self) -> None:
        """Read the held tickets now (blocking): their ids, then the metadata of those the
        last snapshot did not have (of all of them every ``FULL_READ_S``, or when the served
        model's targets changed)."""
        with self._refreshing:
            started = self._clock()
            targets = tuple(self.targets())
            previous = self._snapshot
            full = (
                previous is None
                or previous.targets != targets
                or started - previous.full_at >= FULL_READ_S
            )
            known = {} if full or previous is None else dict(previous.index.by_id)
            ids = self.store.held_ids()
            missing = [i for i in ids if i not in known]
            for first in range(0, len(missing), READ_CHUNK):
                for record in self.store.records(missing[first : first + READ_CHUNK]).values():
                    # Answered between the two reads: no longer held.
                    if layout.awaiting_review(record.metadata):
                        known[record.ticket_id] = HeldTicket.of(record, targets)
            tickets = [known[i] for i in ids if i in known]
            if previous is not None and not full and previous.index.tickets == tickets:
                index, full_at = previous.index, previous.full_at  # nothing changed
            else:
                index = _Index.of(tickets)
                full_at = started if full or previous is None else previous.full_at
            took = self._clock() - started
            snapshot = _Snapshot(index, time.time(), started, took, targets, full_at)
            held = index.by_id
            with self._lock:
                self._snapshot = snapshot
                # Answers the store has applied (read after they were given) are forgotten.
                self._answered = {
                    i: at for i, at in self._answered.items() if i in held or at >= started
                }
            logger.debug(
                "review queue: %d held (%d read%s) in %.3f s",
                len(tickets),
                len(missing),
                ", all" if full else "",
                took,
            )
        if self.on_refresh is not None:
            # Not through page(): a refresh is not someone at the desk (it would never rest).
            self.on_refresh(self._page(snapshot, limit=0))

    def _current(self) -> _Snapshot:
        self._asked = self._clock()
        snapshot = self._snapshot
        if snapshot is None:
            with self._refreshing:
                pass  # the refresher's first read is under way: it is this request's too
            if self._snapshot is None:
                self.refresh()
            snapshot = self._snapshot
            assert snapshot is not None
        elif (
            self._thread is None
            and self._clock() - snapshot.monotonic > self.max_age_s
            and not self._refreshing.locked()
        ):
            self._refresh_quietly()  # no background refresher (not started): this request
            snapshot = self._snapshot or snapshot
        return snapshot

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # the store's outage: keep the last snapshot, say so
            logger.warning("review queue refresh failed: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        """Read the queue in a background thread now, then again while the desk is in use (a
        request in the last minute) or its gauges are scraped, so that requests never wait
        for a read."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="review-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refresher and wait for it (ChromaDB must not be torn down
        under a refresh at exit)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def watched(self) -> None:
        """The queue's gauges were scraped: keep them fresh (every ``WATCHED_MAX_AGE_S``) for
        ``WATCHED_FOR_S``, also while nobody uses the desk (needs :meth:`start`)."""
        self._scraped = self._clock()

    def due(self) -> bool:
        """Whether the background refresher reads the store now: the desk was used in the
        last ``IDLE_AFTER_S`` and the snapshot is ``max_age_s`` old, or the gauges were
        scraped in the last ``WATCHED_FOR_S`` and it is ``WATCHED_MAX_AGE_S`` old; in both
        cases at least (1 + ``REST_FACTOR``) times its read's duration."""
        now = self._clock()
        snapshot = self._snapshot
        if snapshot is None:
            age, rest = float("inf"), 0.0
        else:
            age, rest = now - snapshot.monotonic, (1 + REST_FACTOR) * snapshot.took_s
        if now - self._asked < IDLE_AFTER_S:
            return age >= max(self.max_age_s, rest)
        return now - self._scraped < WATCHED_FOR_S and age >= max(WATCHED_MAX_AGE_S, rest)

    def _run(self) -> None:
        if self._snapshot is None:
            self._refresh_quietly()  # at start: the first page and the gauges need not wait
        while not self._stop.wait(max(self.max_age_s, 0.05)):
            if self.due():
                self._refresh_quietly()

    def page(
        self,
        *,
        target: str | None = None,
        label: str | None = None,
        order: Order = Order.MARGIN,
        limit: int = 50,
    ) -> QueuePage:
        """Held tickets, filtered by an unsure ``target`` and a predicted ``label`` (of
        ``target``, or of any target without one), in ``order``, at most ``limit``; ``counts``
        per unsure target over the whole queue."""
        return self._page(self._current(), target=target, label=label, order=order, limit=limit)

    def _page(
        self,
        snapshot: _Snapshot,
        *,
        target: str | None = None,
        label: str | None = None,
        order: Order = Order.MARGIN,
        limit: int = 50,
    ) -> QueuePage:
        with self._lock:
            answered = set(self._answered)
        # The snapshot's counts, less the tickets answered here since it was read.
        index = snapshot.index
        gone = [index.by_id[i] for i in answered if i in index.by_id]
        less_target, less_label = _counts(gone)
        if target is None and label is None:
            total = len(index.tickets) - len(gone)
        elif target is None:
            # A label of any target: rare enough a filter to count by a scan.
            total = sum(
                1
                for t in index.tickets
                if t.ticket_id not in answered and label in t.predicted.values()
            )
        elif label is None:
            total = index.per_target.get(target, 0) - less_target.get(target, 0)
        else:
            key = (target, label)
            total = index.per_label.get(key, 0) - less_label.get(key, 0)
        items: list[HeldTicket] = []
        if limit > 0 and total > 0:
            for ticket in index.ordered[order]:
                if ticket.ticket_id not in answered and _matches(ticket, target, label):
                    items.append(ticket)
                    if len(items) >= limit:
                        break
        return QueuePage(
            items=items,
            total=total,
            counts={t: index.per_target.get(t, 0) - less_target.get(t, 0) for t in self.targets()},
            refreshed_at=snapshot.refreshed_at,
            refresh_s=snapshot.took_s,
        )

    def neighbours(self, ticket_id: str, **filters: Any) -> tuple[str | None, str | None]:
        """The ids before and after ``ticket_id`` in the queue (``j``/``k`` on the desk)."""
        ids = [t.ticket_id for t in self.page(limit=MAX_LIMIT, **filters).items]
        if ticket_id not in ids:
            return None, ids[0] if ids else None
        at = ids.index(ticket_id)
        return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)
