"""The review queue: tickets held for a person and not yet answered, read from the vector store.

The worker writes every labelled ticket with ``needs_review`` (a gate target is unsure), the
per-target flags, the model's top labels and the review margin (:mod:`ticketflow.schemas.store`).
A person's answer (a ``LabelFeedback`` the worker applies) sets ``label_source=human``: the
ticket leaves the queue.

Reading the held records of a large store takes longer than a page may wait, so
:class:`ReviewQueue` keeps a snapshot that a background thread (:meth:`ReviewQueue.start`, run
by the app's lifespan) reads again every ``max_age_s`` while the desk is in use; requests read
the last snapshot and never wait for a refresh (except the very first). Without the thread, a
request that finds the snapshot stale refreshes it. Answers given through this process leave
its queue at once, before the worker has applied them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ticketflow.adapters.store import StoredRecord
from ticketflow.schemas import store as layout

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 2.0
IDLE_AFTER_S = 60.0  # no request for this long: the background refresher rests
MAX_LIMIT = 500


class Order(StrEnum):
    MARGIN = "margin"  # most informative first: the smallest margin of the gate
    OLDEST = "oldest"  # first labelled, first answered


class HeldSource(Protocol):
    def held_pages(self, page_size: int = ...) -> Iterable[list[StoredRecord]]: ...


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
        )


@dataclass(frozen=True)
class QueuePage:
    items: list[HeldTicket]
    total: int  # held tickets matching the filters
    counts: dict[str, int]  # held tickets per unsure target (over the whole queue)
    refreshed_at: float  # epoch seconds of the snapshot


@dataclass
class _Snapshot:
    tickets: list[HeldTicket] = field(default_factory=list)
    refreshed_at: float = 0.0
    monotonic: float = float("-inf")


class ReviewQueue:
    """The held tickets of ``store`` for a model predicting ``targets`` (a callable: the served
    model may be swapped), refreshed in the background once older than ``max_age_s``."""

    def __init__(
        self,
        store: HeldSource,
        targets: Callable[[], Sequence[str]],
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        on_refresh: Callable[[QueuePage], None] | None = None,
    ) -> None:
        self.store = store
        self.targets = targets
        self.max_age_s = max_age_s
        self.on_refresh = on_refresh
        self._snapshot: _Snapshot | None = None
        self._answered: dict[str, float] = {}  # ticket id -> when answered here (monotonic)
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._asked = float("-inf")  # when a page was last asked for (monotonic)

    def answered(self, ticket_id: str) -> None:
        """``ticket_id`` was answered here: leave it out until the store says so too."""
        with self._lock:
            self._answered[ticket_id] = time.monotonic()

    def refresh(self) -> None:
        """Read the held tickets now (blocking)."""
        with self._refreshing:
            started = time.monotonic()
            targets = list(self.targets())
            tickets = [
                HeldTicket.of(record, targets)
                for page in self.store.held_pages()
                for record in page
            ]
            snapshot = _Snapshot(tickets, time.time(), started)
            held = {t.ticket_id for t in tickets}
            with self._lock:
                self._snapshot = snapshot
                # Answers the store has applied (read after they were given) are forgotten.
                self._answered = {
                    i: at for i, at in self._answered.items() if i in held or at >= started
                }
            logger.debug(
                "review queue: %d held, read in %.3f s", len(tickets), time.monotonic() - started
            )
        if self.on_refresh is not None:
            self.on_refresh(self.page(limit=0))

    def _current(self) -> _Snapshot:
        self._asked = time.monotonic()
        snapshot = self._snapshot
        if snapshot is None:
            self.refresh()
            snapshot = self._snapshot
            assert snapshot is not None
        elif (
            self._thread is None
            and time.monotonic() - snapshot.monotonic > self.max_age_s
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
        """Refresh in a background thread from now on, while the desk is in use (a request
        in the last minute), so that requests never wait for a refresh."""
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

    def _run(self) -> None:
        while not self._stop.wait(max(self.max_age_s, 0.05)):
            if time.monotonic() - self._asked < IDLE_AFTER_S:
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
        snapshot = self._current()
        with self._lock:
            answered = set(self._answered)
        waiting = [t for t in snapshot.tickets if t.ticket_id not in answered]
        counts = Counter(target for t in waiting for target in t.unsure)
        matching = [
            t
            for t in waiting
            if (target is None or target in t.unsure)
            and (
                label is None
                or (t.predicted.get(target) == label if target else label in t.predicted.values())
            )
        ]
        if order is Order.MARGIN:
            matching.sort(key=lambda t: (t.margin, t.processed_at, t.ticket_id))
        else:
            matching.sort(key=lambda t: (t.processed_at, t.ticket_id))
        return QueuePage(
            items=matching[:limit],
            total=len(matching),
            counts={t: counts.get(t, 0) for t in self.targets()},
            refreshed_at=snapshot.refreshed_at,
        )

    def neighbours(self, ticket_id: str, **filters: Any) -> tuple[str | None, str | None]:
        """The ids before and after ``ticket_id`` in the queue (``j``/``k`` on the desk)."""
        ids = [t.ticket_id for t in self.page(limit=MAX_LIMIT, **filters).items]
        if ticket_id not in ids:
            return None, ids[0] if ids else None
        at = ids.index(ticket_id)
        return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)
