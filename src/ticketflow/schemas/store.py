"""The vector-store record layout: one record per ticket id, written and read everywhere.

A record is the ticket's vector plus flat metadata (ChromaDB takes scalar values only):

| key | written by | meaning |
|---|---|---|
| ``model_version`` | worker | the model that labelled the ticket |
| ``needs_review`` | worker | held for a person: a review-gate target is unsure, or an audit |
| ``review_audit`` | worker | held although the gate was sure (``REVIEW_AUDIT_SHARE``) |
| ``label_source`` | worker, feedback | :class:`LabelSource` of the labels in ``<target>`` |
| ``processed_at`` | worker | epoch seconds |
| ``source_partition``, ``source_offset`` | worker | where the ticket was read |
| ``<target>`` | worker, feedback | the current label: the model's, or a person's once corrected |
| ``<target>_probability`` | worker | the model's probability of its label |
| ``<target>_needs_review`` | worker | the model's label of this target is below its review cut |
| ``<target>_top`` | worker | the model's most probable labels, JSON ``[[label, p], ...]`` |
| ``review_margin`` | worker | the smallest top-1 minus top-2 probability of the gate targets |
| ``tags`` | worker | the ticket's tags, a JSON list |
| ``incident_id`` | worker | its emerging incident (``ticket-incidents``), when it has one |
| ``human_<target>`` | feedback | a person's label |
| ``<target>_predicted`` | feedback | the model's label before the first correction |
| ``feedback_by``, ``feedback_at`` | feedback | who corrected it, when (epoch seconds) |
| ``imported_<target>`` | backfill | the label the historical file gave the ticket |
| ``import_source``, ``import_at`` | backfill | the file's name, when (epoch seconds) |

A label's precedence is human, then imported, then the model's: ``<target>`` holds the first
present, and once it is not the model's, ``<target>_predicted`` holds the model's label.

Every writer builds its metadata with the functions here and every reader reads it with
them, so the layout is defined once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from ticketflow.schemas.feedback import LabelFeedback
from ticketflow.schemas.labeled import LabeledTicket

# A record's vectors, one row per ticket: what encoders return and the store keeps.
FloatMatrix = npt.NDArray[np.float32]
MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]

HUMAN_PREFIX = "human_"
IMPORTED_PREFIX = "imported_"
IMPORT_SOURCE = "import_source"  # not imported_*: that prefix is a label's
IMPORT_AT = "import_at"
PREDICTED_SUFFIX = "_predicted"
PROBABILITY_SUFFIX = "_probability"
REVIEW_SUFFIX = "_needs_review"
TOP_SUFFIX = "_top"
LABEL_SOURCE = "label_source"
REVIEW_MARGIN = "review_margin"
TAGS = "tags"
INCIDENT_ID = "incident_id"
REVIEW_AUDIT = "review_audit"
MAX_STORED_TAGS_CHARS = 2_000  # tags are for display; the model text keeps them all


class LabelSource(StrEnum):
    MODEL = "model"
    HUMAN = "human"
    IMPORTED = "imported"  # a label from a historical file (``ticketflow backfill``)


def labeled_metadata(labeled: LabeledTicket, tags: Sequence[str] = ()) -> Metadata:
    """The record the worker writes for a labelled ticket: one label, probability, review
    flag and top labels per target, the review margin and the ticket's ``tags``."""
    metadata: Metadata = {
        "model_version": labeled.model_version,
        "needs_review": labeled.needs_review,
        LABEL_SOURCE: LabelSource.MODEL.value,
        "processed_at": labeled.processed_time.timestamp(),
        "source_partition": labeled.source.partition,
        "source_offset": labeled.source.offset,
    }
    for target, prediction in labeled.predictions.items():
        metadata[target] = prediction.label
        metadata[f"{target}{PROBABILITY_SUFFIX}"] = prediction.probability
        metadata[f"{target}{REVIEW_SUFFIX}"] = prediction.needs_review
        metadata[f"{target}{TOP_SUFFIX}"] = json.dumps(
            [[score.label, round(score.probability, 6)] for score in prediction.top],
            ensure_ascii=False,
        )
    metadata[REVIEW_MARGIN] = _margin(labeled)
    if tags:
        metadata[TAGS] = _bounded_tags(tags)
    if labeled.incident_id is not None:
        metadata[INCIDENT_ID] = labeled.incident_id
    if labeled.audit:
        metadata[REVIEW_AUDIT] = True
    return metadata


def _margin(labeled: LabeledTicket) -> float:
    """How close the gate's call was: the smallest gap between the top two labels' probabilities
    over the gate targets (the review desk asks about the smallest first)."""
    gaps = []
    for target in labeled.review_gate or list(labeled.predictions)[:1]:
        prediction = labeled.predictions.get(target)
        if prediction is None:
            continue
        scores = [score.probability for score in prediction.top] or [prediction.probability]
        gaps.append(scores[0] - (scores[1] if len(scores) > 1 else 0.0))
    return round(min(gaps), 6) if gaps else 1.0


def _bounded_tags(tags: Sequence[str]) -> str:
    kept: list[str] = []
    for tag in tags:
        if len(json.dumps([*kept, tag], ensure_ascii=False)) > MAX_STORED_TAGS_CHARS:
            break
        kept.append(tag)
    return json.dumps(kept, ensure_ascii=False)


def top_labels(metadata: Mapping[str, Any], target: str) -> list[tuple[str, float]]:
    """The model's most probable labels of ``target``, best first (records written before
    ``<target>_top`` give the model's one label)."""
    raw = metadata.get(f"{target}{TOP_SUFFIX}")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
            return [(str(label), float(p)) for label, p in parsed]
        except (ValueError, TypeError):
            pass
    model = model_label(metadata, target)
    return [] if model is None else [model]


def stored_tags(metadata: Mapping[str, Any]) -> list[str]:
    raw = metadata.get(TAGS)
    if not isinstance(raw, str):
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return []
    return [str(tag) for tag in parsed] if isinstance(parsed, list) else []


def incident_id(metadata: Mapping[str, Any]) -> str | None:
    """The emerging incident the worker put the ticket in, if any (members labelled before
    their incident opened carry none: the incident's member list names them)."""
    value = metadata.get(INCIDENT_ID)
    return value if isinstance(value, str) and value else None


def is_audit(metadata: Mapping[str, Any]) -> bool:
    """Held for the random audit share although the gate was sure (``REVIEW_AUDIT_SHARE``)."""
    return bool(metadata.get(REVIEW_AUDIT))


def review_margin(metadata: Mapping[str, Any]) -> float:
    value = metadata.get(REVIEW_MARGIN)
    return float(value) if isinstance(value, int | float) else 1.0


def awaiting_review(metadata: Mapping[str, Any]) -> bool:
    """Held for a person and its labels still the model's (no person nor historical file has
    given one)."""
    return bool(metadata.get("needs_review")) and label_source(metadata) is LabelSource.MODEL


def correction_metadata(feedback: LabelFeedback, current: Mapping[str, Any] | None) -> Metadata:
    """The keys a person's correction sets (merged into the record's metadata)."""
    current = current or {}
    update: Metadata = {
        LABEL_SOURCE: LabelSource.HUMAN.value,
        "feedback_by": feedback.corrected_by,
        "feedback_at": feedback.corrected_at.timestamp(),
    }
    for target, label in feedback.labels.items():
        previous = current.get(target)
        # Keep what the model said the first time a person corrects this target.
        if previous is not None and f"{HUMAN_PREFIX}{target}" not in current:
            update[f"{target}{PREDICTED_SUFFIX}"] = str(previous)
        update[target] = label
        update[f"{HUMAN_PREFIX}{target}"] = label
    return update


def model_labelled_at(metadata: Mapping[str, Any]) -> float | None:
    """When the model labelled the ticket (``processed_at``, epoch seconds), while its labels
    are still the model's: no person (nor historical file) has given one since. None for a
    ticket already answered, an imported one, or a record without ``processed_at``."""
    processed = metadata.get("processed_at")
    if label_source(metadata) is not LabelSource.MODEL:
        return None
    if isinstance(processed, bool) or not isinstance(processed, int | float):
        return None
    return float(processed)


def human_label(metadata: Mapping[str, Any], target: str) -> str | None:
    """A person's label of ``target``, if any."""
    label = metadata.get(f"{HUMAN_PREFIX}{target}")
    return None if label is None else str(label)


def imported_label(metadata: Mapping[str, Any], target: str) -> str | None:
    """The label a historical file gave ``target``, if any."""
    label = metadata.get(f"{IMPORTED_PREFIX}{target}")
    return None if label is None else str(label)


def known_label(metadata: Mapping[str, Any], target: str) -> str | None:
    """A label someone gave ``target``: a person's correction, else an imported one."""
    human = human_label(metadata, target)
    return human if human is not None else imported_label(metadata, target)


def imported_metadata(
    labeled: LabeledTicket,
    imported: Mapping[str, str],
    current: Mapping[str, Any] | None,
    *,
    source: str,
    imported_at: float,
) -> Metadata:
    """The record ``ticketflow backfill`` writes for a historical ticket.

    The model's labels as the worker writes them (:func:`labeled_metadata`), the file's labels
    ``imported`` as ``imported_<target>`` and, where they exist, as the current ``<target>``.
    A person's correction in the ``current`` record is never overwritten: its target keeps the
    person's label, and ``label_source`` stays ``human``. The model's label of a target whose
    current label is not the model's is in ``<target>_predicted``, so :func:`model_label`
    reads it as after a correction. ``source``: where the labels came from (the file name).
    """
    current = current or {}
    metadata = labeled_metadata(labeled)
    # Labels an earlier import gave stay unless this file gives others: upserts merge keys, so
    # ``<target>`` must not fall back to the model's while ``imported_<target>`` remains.
    earlier = {
        key[len(IMPORTED_PREFIX) :]: str(value)
        for key, value in current.items()
        if key.startswith(IMPORTED_PREFIX)
    }
    if earlier and not imported:
        source = str(current.get(IMPORT_SOURCE, source))
        imported_at = float(current.get(IMPORT_AT, imported_at))
    imported = {**earlier, **imported}
    corrected = False
    for target in labeled.predictions:
        human = human_label(current, target)
        given = imported.get(target)
        if human is None and given is None:
            continue
        # The model's label moves aside, as a correction does (model_label reads it there).
        metadata[f"{target}{PREDICTED_SUFFIX}"] = str(metadata[target])
        if given is not None:
            metadata[f"{IMPORTED_PREFIX}{target}"] = given
            metadata[target] = given
        if human is not None:
            metadata[target] = human
            metadata[f"{HUMAN_PREFIX}{target}"] = human
            corrected = True
    for target, given in imported.items():  # labels of targets this model does not predict
        if target not in labeled.predictions:
            metadata[f"{IMPORTED_PREFIX}{target}"] = given
    if imported:
        metadata[LABEL_SOURCE] = LabelSource.IMPORTED.value
        metadata[IMPORT_SOURCE] = source
        metadata[IMPORT_AT] = imported_at
    if corrected or label_source(current) is LabelSource.HUMAN:
        metadata[LABEL_SOURCE] = LabelSource.HUMAN.value
        for key in ("feedback_by", "feedback_at"):
            if key in current:
                metadata[key] = current[key]
    return metadata


def model_label(metadata: Mapping[str, Any], target: str) -> tuple[str, float] | None:
    """The model's label of ``target`` and its probability, when the record has both.

    After a correction ``<target>`` holds the person's label; the model's is then in
    ``<target>_predicted``."""
    label = metadata.get(f"{target}{PREDICTED_SUFFIX}")
    if label is None and human_label(metadata, target) is None:
        label = metadata.get(target)
    probability = metadata.get(f"{target}{PROBABILITY_SUFFIX}")
    if label is None or probability is None:
        return None
    return str(label), float(probability)


def label_source(metadata: Mapping[str, Any]) -> LabelSource:
    try:
        return LabelSource(metadata.get(LABEL_SOURCE, LabelSource.MODEL.value))
    except ValueError:
        return LabelSource.MODEL
