"""Agents' label corrections (``ticket-feedback``) applied to the tickets' ChromaDB records.

A correction becomes metadata of the ticket's stored vector: ``label_source = human``, the
corrected label in ``<target>`` and ``human_<target>``, the model's earlier label in
``<target>_predicted``, who and when. ``ticketflow retrain`` learns from those records, so
nobody re-embeds the history. A correction for an id the store does not hold, or a payload
that is not a valid :class:`~schemas.LabelFeedback`, goes to the dead-letter topic.

Every label a person gives a target the model labelled is counted in
``ticketflow_corrections_total{target,predicted,corrected,changed}``, confirmations (the
person's label is the model's) included: the correction rate is the changed share.

How long tickets wait for a person: the first answer a ticket gets while its labels are the
model's observes ``corrected_at - processed_at`` (seconds from the model's labelling to the
answer) in ``ticketflow_review_answer_seconds``. Later answers of the same ticket (a person
changing their mind) and tickets whose labels came from a historical file are not observed:
nobody was waiting for them. A ticket the worker labels again (the same id re-sent) is
the model's again, so its next answer counts from the new labelling.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ticketflow.schemas import DeadLetter, DeadLetterReason, LabelFeedback
from ticketflow.schemas.store import correction_metadata, model_label, model_labelled_at
from ticketflow.stream.metrics import WorkerMetrics
from ticketflow.stream.routing import Rejected, dead_letter
from ticketflow.stream.worker import RawEvent

logger = logging.getLogger(__name__)

Send = Callable[[bytes | None, bytes], Awaitable[None]]


def decode_feedback(raw: bytes | None, *, max_bytes: int = 65_536) -> LabelFeedback | Rejected:
    if raw is None:
        return Rejected(DeadLetterReason.INVALID_JSON, "empty message (null value)")
    if len(raw) > max_bytes:
        return Rejected(
            DeadLetterReason.MESSAGE_TOO_LARGE, f"feedback has {len(raw)} bytes, limit {max_bytes}"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Rejected(DeadLetterReason.NOT_UTF8, f"value is not valid UTF-8: {exc}")
    except (json.JSONDecodeError, RecursionError) as exc:
        return Rejected(DeadLetterReason.INVALID_JSON, f"invalid JSON: {exc}")
    if not isinstance(data, dict):
        return Rejected(
            DeadLetterReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}"
        )
    ticket_id = data.get("ticket_id")
    readable = ticket_id if isinstance(ticket_id, str) and ticket_id.strip() else None
    try:
        return LabelFeedback.model_validate(data)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'feedback'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        ]
        return Rejected(DeadLetterReason.VALIDATION_ERROR, "; ".join(parts), readable)


@dataclass(frozen=True)
class ReviewedLabel:
    """A person's label of one target next to the model's label of it on that ticket."""

    target: str
    predicted: str
    corrected: str


@dataclass
class FeedbackOutcome:
    applied: list[str]
    unknown: list[str]
    # One per applied (ticket, target) the model had labelled; targets the model does not
    # predict have no model label to compare with and are not listed.
    reviewed: list[ReviewedLabel] = field(default_factory=list)
    # Seconds from the model's labelling to a person's first answer, one per applied
    # feedback that was its ticket's first answer (the model's labels were still stored).
    # Never negative: a feedback clock behind the worker's counts as answered at once.
    answer_delays: list[float] = field(default_factory=list)


def apply_feedback(collection: Any, feedback: Sequence[LabelFeedback]) -> FeedbackOutcome:
    """Merge corrections into the records of ``collection``; ids it does not hold are returned.

    Several corrections of one ticket in a batch are applied in order (the last one wins).
    """
    if not feedback:
        return FeedbackOutcome(applied=[], unknown=[])
    ids = list(dict.fromkeys(f.ticket_id for f in feedback))
    found = collection.get(ids=ids, include=["metadatas"])
    current: dict[str, dict[str, Any]] = {
        i: dict(m or {}) for i, m in zip(found["ids"], found["metadatas"], strict=True)
    }
    applied: list[str] = []
    unknown: list[str] = []
    reviewed: list[ReviewedLabel] = []
    delays: list[float] = []
    for item in feedback:
        record = current.get(item.ticket_id)
        if record is None:
            unknown.append(item.ticket_id)
            continue
        labelled_at = model_labelled_at(record)  # None once answered (earlier in this batch too)
        if labelled_at is not None:
            delays.append(max(0.0, item.corrected_at.timestamp() - labelled_at))
        for target, label in item.labels.items():
            # The model's label as stored before any correction (a second correction of the
            # same ticket is compared with the model too, not with the first one).
            model = model_label(record, target)
            if model is not None:
                reviewed.append(ReviewedLabel(target, model[0], label))
        record.update(correction_metadata(item, record))
        applied.append(item.ticket_id)
    if applied:
        ready = list(dict.fromkeys(applied))
        collection.update(ids=ready, metadatas=[current[i] for i in ready])
    return FeedbackOutcome(
        applied=applied, unknown=unknown, reviewed=reviewed, answer_delays=delays
    )


class FeedbackApplier:
    """The worker side: one batch of feedback events in, store updated, rejects dead-lettered."""

    def __init__(
        self,
        *,
        collection: Any,
        send_dead: Send,
        executor: Executor,
        metrics: WorkerMetrics,
        dlq_keep_bytes: int,
    ) -> None:
        self.collection = collection
        self.send_dead = send_dead
        self.executor = executor
        self.metrics = metrics
        self.dlq_keep_bytes = dlq_keep_bytes

    async def handle(self, events: Sequence[RawEvent]) -> FeedbackOutcome:
        valid: list[tuple[LabelFeedback, RawEvent]] = []
        dead: list[DeadLetter] = []
        for event in events:
            decoded = decode_feedback(event.value)
            if isinstance(decoded, Rejected):
                dead.append(self._dead(event, decoded))
            else:
                valid.append((decoded, event))
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            self.executor, apply_feedback, self.collection, [f for f, _ in valid]
        )
        unknown = set(outcome.unknown)
        for item, event in valid:
            if item.ticket_id in unknown:
                rejected = Rejected(
                    DeadLetterReason.UNKNOWN_TICKET,
                    f"no ticket {item.ticket_id!r} in the vector store: it was never labelled "
                    "(or was labelled into another collection)",
                    item.ticket_id,
                )
                dead.append(self._dead(event, rejected))
        await asyncio.gather(
            *(
                self.send_dead(
                    d.ticket_id.encode("utf-8") if d.ticket_id else None,
                    d.model_dump_json().encode("utf-8"),
                )
                for d in dead
            )
        )
        self.metrics.feedback_applied.inc(len(outcome.applied))
        for label in outcome.reviewed:
            self.metrics.count_correction(label.target, label.predicted, label.corrected)
        for delay in outcome.answer_delays:
            self.metrics.review_answer_seconds.observe(delay)
        if outcome.applied:
            logger.info("applied %d label corrections", len(outcome.applied))
        return outcome

    def _dead(self, event: RawEvent, rejected: Rejected) -> DeadLetter:
        self.metrics.dead_lettered.labels(reason=rejected.error_type.value).inc()
        logger.info("feedback dead letter %s: %s", rejected.error_type.value, rejected.reason)
        return dead_letter(
            event.value, rejected, event.position, keep_bytes=self.dlq_keep_bytes, key=event.key
        )
