"""The review queue as Label Studio tasks, and Label Studio's annotations as feedback events.

ML teams that annotate in Label Studio answer held tickets there instead of on the desk. No
SDK is needed: both directions are Label Studio's documented JSON formats.

* Out (:func:`tasks`, :func:`label_config`): one *import task* per held ticket,
  ``{"data": {...}, "predictions": [...]}``, the model's label of each target as a ``choices``
  pre-annotation, and the labeling config those tasks need: a ``Text`` named ``text`` and
  one single-choice ``Choices`` per target, named after it, with the served model's classes.
  A ticket whose record keeps no text (``CHROMA_DOCUMENT=none``) has ``text_missing: true``
  and a ``text`` that says so (the annotator sees why it is empty; a reader of the data can
  tell the note from a ticket's text by the flag).
* In (:func:`feedback_from_export`): Label Studio's JSON export (a list of tasks with their
  ``annotations``). Per task, the latest annotation that was not cancelled (skipped) is the
  answer; it is checked as an answer on the desk is (:func:`ticketflow.review.answers.answer`:
  new labels allowed, a known class spelt differently refused), and stamped with who gave
  it (``label-studio:<email or user id>``) and when (the annotation's ``updated_at``). What
  cannot become a ``LabelFeedback`` is a :class:`Problem`, never an exception: one bad task
  must not hold back the rest of a file.

Importing twice must not publish an answer twice (each published answer counts in the
correction rate). Two records say whether an answer was published; either one suffices:

1. The vector store: the worker applies an answer to the ticket's record (``human_<target>``,
   ``feedback_by``, ``feedback_at``). A record holding the same labels from the same annotator
   has it; a record holding a person's answer given *after* the annotation has a newer one,
   which a stale annotation must not overwrite. This works from any machine, but only once
   the worker has applied the event.
2. An import ledger (:class:`ImportLedger`, kept by the command under ``STATE_DIR``): per
   ticket and annotator, the labels last published and when. It covers the time until the
   worker applies them. A ticket the worker labelled again since (its record rewritten, the
   correction gone) is published again, as the docs ask for any re-labelled ticket.

So a re-import publishes only answers that changed in Label Studio since. The ledger is
written after the broker acknowledged the events; if that fails half-way, the store still
catches what the worker applied, and the rest may be published twice (at least once).
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import quoteattr

from pydantic import ValidationError

from ticketflow.adapters.store import StoredRecord
from ticketflow.data.errors import InputError
from ticketflow.review.answers import AnswerError, answer
from ticketflow.review.queue import HeldTicket
from ticketflow.schemas import store as layout
from ticketflow.schemas.feedback import LabelFeedback

logger = logging.getLogger(__name__)

TEXT = "text"  # the Text object tag, and the task data field it shows
COMMENT = "comment"  # the optional TextArea for a comment (not when a target has this name)
WHO_PREFIX = "label-studio:"
NO_TEXT = (
    "[ticketflow keeps no text of this ticket (CHROMA_DOCUMENT=none): "
    "find it by its ticket id in your help desk]"
)
MAX_WHO_CHARS = 200


class LabelStudioFormatError(InputError):
    """A file that is not Label Studio's JSON export (``ticketflow`` exits 2)."""


@dataclass(frozen=True)
class Problem:
    """A task of the export that gives no feedback event, and why.

    ``refused``: its answer is unusable (a known class spelt differently, an unknown target,
    no ticket id …) and must be fixed in Label Studio; otherwise there is nothing to publish
    (cancelled, not annotated, a later annotation of the same ticket)."""

    task: int | str | None  # Label Studio's task id (its position in the file without one)
    ticket_id: str | None
    reason: str
    refused: bool = True

    def __str__(self) -> str:
        where = [] if self.task is None else [f"task {self.task}"]
        if self.ticket_id is not None:
            where.append(f"ticket {self.ticket_id}")
        return f"{', '.join(where) or 'task ?'}: {self.reason}"


# ---- out: labeling config and tasks ---------------------------------------------------------


def _answerable(label: str) -> bool:
    """Whether an answer may give ``label``: no control (or other ``C*``) characters, which
    :func:`~ticketflow.review.answers.clean_label` refuses and XML 1.0 cannot always hold."""
    return not any(unicodedata.category(ch).startswith("C") for ch in label)


def label_config(known: Mapping[str, Sequence[str]]) -> str:
    """The labeling config of the tasks :func:`tasks` writes: the ticket's text, then one
    single-choice list per target (``known``: the served model's classes per target), then
    an optional comment. Every value is XML-escaped; a class with control characters (which
    no answer may give, :func:`~ticketflow.review.answers.clean_label`) is left out."""
    if TEXT in known:
        raise ValueError(f"a target named {TEXT!r} clashes with the Text tag of the config")
    lines = [
        "<View>",
        '  <Header value="$ticket_id"/>',
        f'  <Text name="{TEXT}" value="${TEXT}"/>',
    ]
    for target, classes in known.items():
        lines.append(f"  <Header value={quoteattr(target)}/>")
        lines.append(
            f'  <Choices name={quoteattr(target)} toName="{TEXT}" choice="single" '
            'showInLine="true">'
        )
        for label in classes:
            if not _answerable(label):
                logger.warning("%s: class %r has control characters: left out", target, label)
                continue
            lines.append(f"    <Choice value={quoteattr(label)}/>")
        lines.append("  </Choices>")
    if COMMENT not in known:
        lines.append(
            f'  <TextArea name="{COMMENT}" toName="{TEXT}" placeholder="Comment (optional)" '
            'maxSubmissions="1" editable="true"/>'
        )
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def tasks(
    held: Sequence[HeldTicket],
    records: Mapping[str, StoredRecord],
    known: Mapping[str, Sequence[str]],
    model_version: str,
) -> list[dict[str, Any]]:
    """Label Studio import tasks for ``held`` tickets, in their order.

    ``records``: the tickets' stored records with their documents (a ticket without one is
    exported with ``text_missing``); ``known``: the served model's classes per target, the
    choices of :func:`label_config` (a model label outside them is not pre-annotated);
    ``model_version``: the served model, named by predictions of tickets whose record does
    not say which model labelled them."""
    out: list[dict[str, Any]] = []
    for ticket in held:
        record = records.get(ticket.ticket_id)
        document = record.document if record is not None else None
        metadata = record.metadata if record is not None else {}
        data: dict[str, Any] = {
            "ticket_id": ticket.ticket_id,
            TEXT: document if document else NO_TEXT,
            "text_missing": not document,
            "tags": layout.stored_tags(metadata),
            "unsure": list(ticket.unsure),
            "review_margin": ticket.margin,
        }
        result = []
        scores = []
        for target, label in ticket.predicted.items():
            if target not in known or label not in known[target]:
                logger.debug(
                    "%s: %s=%r is no choice: not pre-annotated", ticket.ticket_id, target, label
                )
                continue
            result.append(
                {
                    "from_name": target,
                    "to_name": TEXT,
                    "type": "choices",
                    "value": {"choices": [label]},
                }
            )
            scores.append(ticket.probability[target])
        task: dict[str, Any] = {"data": data}
        if result:
            task["predictions"] = [
                {
                    "model_version": ticket.model_version or model_version,
                    # Label Studio sorts by it: the least sure label of the ticket.
                    "score": round(min(scores), 6),
                    "result": result,
                }
            ]
        out.append(task)
    return out


# ---- in: annotations to feedback ------------------------------------------------------------


def export_tasks(items: object) -> list[Mapping[str, Any]]:
    """The tasks of a Label Studio JSON export (a parsed file), or
    :class:`LabelStudioFormatError` naming why it is not one."""
    if not isinstance(items, list):
        raise LabelStudioFormatError(
            "not a Label Studio JSON export: expected a list of tasks, got "
            f"{type(items).__name__} (export the project as JSON)"
        )
    for position, item in enumerate(items, 1):
        if not isinstance(item, Mapping):
            raise LabelStudioFormatError(
                f"not a Label Studio JSON export: item {position} is "
                f"{type(item).__name__}, not a task object"
            )
        if not isinstance(item.get("data"), Mapping):
            hint = (
                " (this looks like JSON_MIN: export the project as JSON)"
                if "annotation_id" in item or "annotator" in item
                else ""
            )
            raise LabelStudioFormatError(
                f"not a Label Studio JSON export: task {position} has no data object{hint}"
            )
    return items


def _when(annotation: Mapping[str, Any]) -> datetime | None:
    for key in ("updated_at", "created_at"):
        raw = annotation.get(key)
        if isinstance(raw, str):
            try:
                parsed = datetime.fromisoformat(raw.strip())
            except ValueError:
                continue
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _who(completed_by: object, default: str) -> str:
    """``label-studio:<who>`` of an annotation's ``completed_by``: a user id (the documented
    export), or an object with an email and an id (older exports); ``default`` without one
    (an export with user details removed)."""
    who: object = completed_by
    if isinstance(completed_by, Mapping):
        who = completed_by.get("email") or completed_by.get("id")
    if isinstance(who, bool) or who is None:
        return default
    text = "".join(ch for ch in str(who) if not unicodedata.category(ch).startswith("C"))
    text = text.strip()[:MAX_WHO_CHARS]
    return f"{WHO_PREFIX}{text}" if text else default


def _latest(annotations: Sequence[Any]) -> Mapping[str, Any] | None:
    """The latest annotation that was not cancelled; the later in the list on a tie."""
    floor = datetime.min.replace(tzinfo=UTC)
    kept = [
        (_when(a) or floor, i, a)
        for i, a in enumerate(annotations)
        if isinstance(a, Mapping) and not a.get("was_cancelled")
    ]
    return max(kept, key=lambda entry: entry[:2])[2] if kept else None


def _answer_of(annotation: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """The labels per target and the comment of an annotation's ``result``; ``AnswerError``
    for a result that picks several labels of one target."""
    labels: dict[str, str] = {}
    comments: list[str] = []
    result = annotation.get("result")
    for item in result if isinstance(result, list) else []:
        if not isinstance(item, Mapping):
            continue
        kind, name, value = item.get("type"), item.get("from_name"), item.get("value")
        if not isinstance(name, str) or not isinstance(value, Mapping):
            continue
        if kind == "choices":
            choices = value.get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise AnswerError(f"{name}: the choices are not a list of labels")
            if len(choices) > 1 or (choices and name in labels):
                raise AnswerError(f"{name}: one label per target, not {len(choices)}")
            if choices:
                labels[name] = choices[0]
        elif kind == "textarea" and name == COMMENT:
            text = value.get("text")
            lines = text if isinstance(text, list) else [text]
            comments.extend(line for line in lines if isinstance(line, str))
        else:  # another control someone added to the config: not ours to read
            logger.debug("ignored a %r result of %r", kind, name)
    return labels, "\n".join(comments) or None


def feedback_from_export(
    items: object, known: Mapping[str, Sequence[str]], corrected_by_default: str
) -> tuple[list[LabelFeedback], list[Problem]]:
    """The feedback events of a Label Studio JSON export ``items`` (the parsed file), and the
    tasks that give none.

    ``known``: the served model's classes per target (answers are checked against them as on
    the desk); ``corrected_by_default``: who answered when the export does not say. One event
    per ticket: when several tasks hold the same ticket, the latest answer wins.
    :class:`LabelStudioFormatError` when ``items`` is not such an export at all."""
    chosen: dict[str, tuple[LabelFeedback, int | str]] = {}
    problems: list[Problem] = []
    for position, task in enumerate(export_tasks(items), 1):
        raw_id = task.get("id")
        task_id: int | str = raw_id if isinstance(raw_id, int | str) else f"#{position}"
        ticket = task["data"].get("ticket_id")
        ticket_id = ticket.strip() if isinstance(ticket, str) else None
        if not ticket_id:
            problems.append(Problem(task_id, None, "no data.ticket_id: not a ticketflow task"))
            continue
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            problems.append(Problem(task_id, ticket_id, "annotations is not a list"))
            continue
        latest = _latest(annotations)
        if latest is None:
            reason = "cancelled (skipped) in Label Studio" if annotations else "not annotated"
            problems.append(Problem(task_id, ticket_id, reason, refused=False))
            continue
        try:
            labels, comment = _answer_of(latest)
            feedback = answer(
                ticket_id,
                labels,
                known=known,
                corrected_by=_who(latest.get("completed_by"), corrected_by_default),
                comment=comment,
            )
        except AnswerError as exc:
            problems.append(Problem(task_id, ticket_id, str(exc)))
            continue
        except ValidationError as exc:  # e.g. a ticket id longer than the contract allows
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "feedback"
            problems.append(Problem(task_id, ticket_id, f"{where}: {first['msg']}"))
            continue
        when = _when(latest)
        if when is not None:
            feedback = feedback.model_copy(update={"corrected_at": when})
        earlier = chosen.get(ticket_id)
        if earlier is not None:
            older, newer = sorted([earlier, (feedback, task_id)], key=lambda e: e[0].corrected_at)
            problems.append(
                Problem(
                    older[1],
                    ticket_id,
                    f"task {newer[1]} holds a later answer for the same ticket",
                    refused=False,
                )
            )
            chosen[ticket_id] = newer
        else:
            chosen[ticket_id] = (feedback, task_id)
    return [feedback for feedback, _ in chosen.values()], problems


# ---- idempotency ----------------------------------------------------------------------------


class Seen(StrEnum):
    """Why an answer is not published again."""

    STORE = "the store holds it"
    NEWER = "the store holds a person's later answer"
    LEDGER = "published by an earlier import"


@dataclass
class ImportLedger:
    """Per ticket and annotator, the labels an import last published and when (epoch s)."""

    published: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> ImportLedger:
        """The ledger :meth:`to_json` wrote; ``ValueError`` for anything else."""
        data = json.loads(text)
        tickets = data.get("published") if isinstance(data, dict) else None
        if not isinstance(tickets, dict):
            raise ValueError("not an import ledger (no 'published' object)")
        ledger = cls()
        for ticket_id, by_who in tickets.items():
            if not isinstance(by_who, dict):
                raise ValueError(f"ledger entry of {ticket_id!r} is not an object")
            for who, entry in by_who.items():
                if not isinstance(entry, dict):
                    raise ValueError(f"ledger entry of {ticket_id!r} by {who!r} is malformed")
                labels, at = entry.get("labels"), entry.get("at")
                if not isinstance(labels, dict) or not isinstance(at, int | float):
                    raise ValueError(f"ledger entry of {ticket_id!r} by {who!r} is malformed")
                ledger.published.setdefault(ticket_id, {})[who] = {
                    "labels": {str(k): str(v) for k, v in labels.items()},
                    "at": float(at),
                }
        return ledger

    def to_json(self) -> str:
        return json.dumps({"published": self.published}, ensure_ascii=False, sort_keys=True)

    def record(self, feedback: LabelFeedback, at: float) -> None:
        """``feedback`` was published (acknowledged by the broker) at ``at``."""
        self.published.setdefault(feedback.ticket_id, {})[feedback.corrected_by] = {
            "labels": dict(feedback.labels),
            "at": at,
        }

    def published_at(self, feedback: LabelFeedback) -> float | None:
        """When an import published ``feedback``'s labels for its ticket by its annotator."""
        entry = self.published.get(feedback.ticket_id, {}).get(feedback.corrected_by)
        if entry is None or entry["labels"] != feedback.labels:
            return None
        return float(entry["at"])


def seen(feedback: LabelFeedback, metadata: Mapping[str, Any], ledger: ImportLedger) -> Seen | None:
    """Why ``feedback`` need not be published (its ticket's stored ``metadata`` and the
    ``ledger`` say it was), or None: publish it."""
    human = layout.label_source(metadata) is layout.LabelSource.HUMAN
    if (
        human
        and metadata.get("feedback_by") == feedback.corrected_by
        and all(
            layout.human_label(metadata, target) == label and metadata.get(target) == label
            for target, label in feedback.labels.items()
        )
    ):
        return Seen.STORE
    answered_at = metadata.get("feedback_at")
    if (
        human
        and isinstance(answered_at, int | float)
        and answered_at > feedback.corrected_at.timestamp()
    ):
        return Seen.NEWER
    published = ledger.published_at(feedback)
    processed = metadata.get("processed_at")
    relabelled = (
        published is not None
        and isinstance(processed, int | float)
        and math.isfinite(processed)
        and processed > published
    )
    if published is not None and not relabelled:
        return Seen.LEDGER
    return None


def unpublished(
    feedback: Sequence[LabelFeedback],
    current: Mapping[str, Mapping[str, Any]],
    ledger: ImportLedger,
) -> tuple[list[LabelFeedback], list[tuple[LabelFeedback, Seen]], list[Problem]]:
    """``feedback`` split into what to publish, what was published before (and why it is
    known) and tickets the store does not hold (``current``: stored metadata by ticket id),
    which the worker would dead-letter: refused here, with the reason."""
    new: list[LabelFeedback] = []
    old: list[tuple[LabelFeedback, Seen]] = []
    missing: list[Problem] = []
    for event in feedback:
        metadata = current.get(event.ticket_id)
        if metadata is None:
            missing.append(Problem(None, event.ticket_id, "not in the vector store"))
            continue
        why = seen(event, metadata, ledger)
        if why is None:
            new.append(event)
        else:
            old.append((event, why))
    return new, old, missing
