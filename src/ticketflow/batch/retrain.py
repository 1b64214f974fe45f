"""``ticketflow retrain``: a challenger from the vectors, texts and labels in ChromaDB.

The vectors the workers stored, their model text (the Chroma document, ``CHROMA_DOCUMENT``
``redacted`` by default, or ``full``) and their labels (human corrections first, confident
model labels when allowed) are what a challenger learns from. A single-stage model reads the
stored vectors and embeds nothing. A cascade's store holds its static first stage's vectors
only, so its transformer stage is refitted on the stored text embedded again with the
champion's own encoder (``dense_encoder``), in batches: both stages learn everything
``ticketflow train`` could teach them, classes people introduced included. It is fitted with
the same recipe as ``ticketflow train`` (:func:`ticketflow.batch.train.fit_model`), then
challenger and champion are evaluated on human-labelled tickets the challenger never saw, and
the challenger is promoted only when it is better by a margin and no class got worse by more
than a tolerance. A class the champion never had (a new queue people named) is learned once
``min_new_class_examples`` labels name it; the champion is then also compared on the tickets
of the classes it knows, and the new class's F1 is reported. Every run writes a JSON and a
markdown report, promoted or not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tenacity

from ticketflow.adapters.store import is_permanent
from ticketflow.batch.evaluate import bootstrap_gains, evaluate_predictions, predict_rows
from ticketflow.batch.train import library_versions
from ticketflow.data.progress import progress
from ticketflow.models.cascade import CascadeEscalate
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.embedding import Encoder
from ticketflow.models.encoders import encoder_sha256
from ticketflow.models.recipe import ModelConfig, add_first_stage, fit_model, out_of_fold_rows
from ticketflow.models.registry import ModelRegistry, TrainingRows, new_version
from ticketflow.models.review import DEFAULT_POLICY, ReviewPolicy
from ticketflow.monitoring.reference import ReferenceSpec
from ticketflow.monitoring.sample import predictions_sample
from ticketflow.schemas import store as layout
from ticketflow.schemas.store import LabelSource

logger = logging.getLogger(__name__)

HELD_OUT = "held-out human labels"
EVAL_FILE = "evaluation file"
# The same evaluation set without the tickets of classes the champion never had: what both
# models can be compared on (:func:`decide`).
KNOWN_TO_BOTH = ", classes the champion knows"
AUDIT = "audited tickets (a random share of the confident ones)"
# A loss on the audited tickets vetoes a promotion only when the challenger is worse there in
# this share of bootstrap resamples: a few dozen audits, on which both models are mostly
# right, otherwise vetoed three better new-queue challengers on one- or two-ticket losses
# (docs/learning.md, "An audit sample").
AUDIT_VETO_CONFIDENCE = 0.9
EMBED_CHUNK = 256  # texts per encoder call when re-embedding: bounded memory, a live bar
# Labels a person gave: a correction, or a historical file's (``ticketflow backfill``).
KNOWN_SOURCES = frozenset({LabelSource.HUMAN, LabelSource.IMPORTED})


class RetrainError(RuntimeError):
    """Retraining cannot run (no documents, too few labels, mismatched encoder...)."""


@dataclass(frozen=True)
class RetrainPolicy:
    use_predicted: bool = True
    min_probability: float = 0.9
    holdout_fraction: float = 0.3
    min_holdout: int = 20
    margin: float = 0.01
    class_tolerance: float = 0.05
    # A label the champion does not know is trained on once people gave it this often.
    min_new_class_examples: int = 10
    # A class's F1 drop vetoes a promotion only with this many evaluation tickets: on a
    # handful, one ticket moves F1 by more than the tolerance; with 0 every challenger of a
    # language shift and the late ones of a new queue were vetoed (docs/learning.md).
    min_class_support: int = 20
    # A challenger is promoted only when its gain is above 0 in this share of paired
    # bootstrap resamples of the evaluation set; 0: the margin alone decides (the share is
    # still reported). Off by default: at 0.9 the closed loop rejected as many better
    # challengers as it kept out worse ones, since the held-out answers' bias, not their
    # noise, is what misleads the rule (docs/learning.md, four runs).
    confidence: float = 0.0


@dataclass(frozen=True)
class RetrainRequest:
    """What a challenger is fitted with and judged on.

    ``eval_labels``: ticket id -> {target: label} of a fixed evaluation set whose vectors and
    texts are in the store; those tickets are never trained on. ``force``: promote even if
    the challenger loses. ``source``: recorded as the challenger's data.
    ``progress``: a bar while re-embedding. ``cascade_agreement`` and ``cascade_escalate``:
    as for ``ticketflow train`` (``CASCADE_AGREEMENT``, ``CASCADE_ESCALATE``), when a
    cascade's stages are both refitted.
    """

    config: ModelConfig = field(default_factory=ModelConfig)
    eval_labels: Mapping[str, Mapping[str, str]] | None = None
    force: bool = False
    seed: int = 42
    source: str = "chroma"
    cascade_agreement: float = 0.97
    cascade_escalate: CascadeEscalate = "gate"
    progress: bool = False  # a bar while the stored texts are re-embedded


@dataclass
class StoredTickets:
    """Everything retraining reads from the vector store."""

    ids: list[str]
    vectors: npt.NDArray[np.float32]
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    embedding_model: str | None = None


def read_store(
    collection: Any, page_size: int = 2_000, *, attempts: int = 10, retry_delay_s: float = 2.0
) -> StoredTickets:
    """Every record of a Chroma collection: ids, stored vectors, metadata and documents.

    A read of an embedded store that a worker process is writing to can fail mid-way
    (ChromaDB: "Error executing plan: Internal error: Error finding id"), and pages shift
    under it; such a read starts over, up to ``attempts`` times, after a jittered backoff
    from ``retry_delay_s``. A permanent error (a missing collection, refused credentials)
    fails at once with its reason. A Chroma server serialises reads and writes, so the
    retries are for embedded stores shared by processes (local runs, tests). Ten attempts
    wait about two minutes in all: on a loaded 2-core machine (2026-12-07, a fresh-clone
    ``.ci/run``, ``tests/stream/test_retrain_integration.py`` with a worker writing 15
    tickets/s) six attempts over 32 s all failed."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: not is_permanent(exc)),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(initial=retry_delay_s, max=retry_delay_s * 8),
        before_sleep=lambda state: logger.warning(
            "reading the vector store failed (%s); reading again (%d/%d)",
            state.outcome.exception() if state.outcome else "?",
            state.attempt_number,
            attempts,
        ),
        reraise=True,
    )
    return retrying(_read_pages, collection, page_size)


def _read_pages(collection: Any, page_size: int) -> StoredTickets:
    ids: list[str] = []
    vectors: list[npt.NDArray[np.float32]] = []
    metadatas: list[dict[str, Any]] = []
    documents: list[str | None] = []
    offset = 0
    while True:
        page = collection.get(
            include=["embeddings", "metadatas", "documents"], limit=page_size, offset=offset
        )
        if not page["ids"]:
            break
        ids.extend(page["ids"])
        vectors.append(np.asarray(page["embeddings"], dtype=np.float32))
        metadatas.extend(dict(m or {}) for m in page["metadatas"])
        documents.extend(page["documents"] or [None] * len(page["ids"]))
        offset += len(page["ids"])
    declared = (collection.metadata or {}).get("embedding_model")
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    return StoredTickets(ids, matrix, metadatas, documents, declared)


@dataclass
class Selection:
    train_rows: list[int]
    train_labels: dict[str, list[str]]
    held_out: dict[str, list[tuple[int, str]]]  # target -> (row, human label)
    counts: dict[str, int] = field(default_factory=dict)
    # target -> {label the champion does not know: how many labels people gave it}
    new_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    # the new labels below ``min_new_class_examples``: their tickets are not trained on
    too_few: dict[str, dict[str, int]] = field(default_factory=dict)
    # target -> (row, human label) of the audited tickets people answered: never trained on
    audit: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


def training_label(meta: Mapping[str, Any], target: str, policy: RetrainPolicy) -> str | None:
    """The label a stored ticket is trained on for ``target``: a person's or a historical
    file's, else the model's when ``policy`` allows it and it was confident; None: none."""
    known = layout.known_label(meta, target)  # a person's, else a historical file's
    if known is not None:
        return known
    if not policy.use_predicted:
        return None
    predicted = layout.model_label(meta, target)
    if predicted is None or predicted[1] < policy.min_probability:
        return None
    return predicted[0]


def select(  # noqa: PLR0913
    stored: StoredTickets,
    targets: Sequence[str],
    policy: RetrainPolicy,
    *,
    needs_text: bool,
    exclude: Collection[str] = (),
    seed: int = 42,
    known: Mapping[str, Collection[str]] | None = None,
    seen: Collection[int] = (),
    classes_of: Callable[[], Mapping[str, Mapping[str, Collection[str]]]] | None = None,
) -> Selection:
    """Hold out a share of the human-labelled tickets; train on the rest that has labels.

    Labels imported from a historical file (``ticketflow backfill``) count as human labels,
    for training and for the hold-out. ``known``: the champion's classes per target; a label
    outside them is a new class, trained on only when people gave it at least
    ``policy.min_new_class_examples`` times (its rarer tickets stay in the hold-out, so the
    report shows what the models do with them). ``seen``: rows the champion was fit on
    (a backfilled history ``ticketflow train`` learned from): trained on, never held out, or
    the champion would be judged on tickets it memorised and no challenger could win.
    ``classes_of``: gives model version -> target -> the classes that model knew; called
    when people answered some ticket. A model's confident label is not trained on when that
    model never knew a class the challenger will know (the champion's, or a new one people
    named at least ``min_new_class_examples`` times) and the ticket people answered that is
    nearest to it (stored vectors, cosine; the hold-out excepted) is of such a class: the
    model could not have told such a ticket, and its confident labels put the class's
    tickets in another class. That holds after a promoted model learned the class too: the
    first champion's labels stay in the store. Only near such answers:
    dropping every label of such a model leaves a store without history nothing but the
    answers to learn from (both measured in docs/learning.md). People's answers to audited
    tickets (``REVIEW_AUDIT_SHARE``) are held out apart, all of them, in ``audit``."""
    counts: Counter[str] = Counter()
    usable: list[int] = []
    for row, ticket_id in enumerate(stored.ids):
        if ticket_id in exclude:
            counts["excluded (evaluation file)"] += 1
        elif needs_text and not stored.documents[row]:
            counts["no document"] += 1
        else:
            usable.append(row)
    if needs_text and usable == [] and counts["no document"]:
        raise RetrainError(
            f"none of the {len(stored.ids)} stored tickets has its model text: the workers "
            "store it only with CHROMA_DOCUMENT=redacted (or full); the model's TF-IDF "
            "features need it"
        )
    human = [r for r in usable if layout.label_source(stored.metadatas[r]) in KNOWN_SOURCES]
    new_labels: dict[str, dict[str, int]] = {}
    too_few: dict[str, dict[str, int]] = {}
    for target, classes in (known or {}).items():
        given = Counter(layout.known_label(stored.metadatas[r], target) for r in human)
        fresh = {
            label: given[label]
            for label in sorted(str(x) for x in given if x is not None)
            if label not in classes
        }
        if fresh:
            new_labels[target] = fresh
        rare = {label: n for label, n in fresh.items() if n < policy.min_new_class_examples}
        if rare:
            too_few[target] = rare
    learned = {
        target: set(fresh) - set(too_few.get(target, {})) for target, fresh in new_labels.items()
    }
    rng = random.Random(seed)
    # Stratify the hold-out on the first target's human label, so each class is in both parts.
    by_class: dict[str, list[int]] = defaultdict(list)
    seen = set(seen)
    # People's answers to audited tickets (a random share of those the model was sure of)
    # are the one sample of the stream's confident part: kept apart to judge on.
    audited = [
        r
        for r in human
        if r not in seen
        and layout.is_audit(stored.metadatas[r])
        and layout.label_source(stored.metadatas[r]) is LabelSource.HUMAN
    ]
    apart = set(audited)
    for row in human:
        if row not in seen and row not in apart:
            by_class[str(layout.known_label(stored.metadatas[row], targets[0]))].append(row)
    held: set[int] = set()
    for rows in by_class.values():
        rng.shuffle(rows)
        held.update(rows[: round(len(rows) * policy.holdout_fraction)])
    held_out: dict[str, list[tuple[int, str]]] = {}
    for target in targets:
        pairs = []
        for row in sorted(held):
            label = layout.known_label(stored.metadatas[row], target)
            if label is not None:
                pairs.append((row, label))
        held_out[target] = pairs
    audit = {
        target: [
            (row, label)
            for row in audited
            if (label := layout.known_label(stored.metadatas[row], target)) is not None
        ]
        for target in targets
    }
    held.update(audited)
    suspect: set[int] = set()
    # The classes the challenger will know: the champion's and those people taught it now.
    # A model that lacked one of them may have misfiled its tickets, also after a promoted
    # model learned it (the first champion's labels stay in the store).
    teaching = {t: {*(known or {}).get(t, ()), *learned.get(t, ())} for t in targets}
    if classes_of is not None and human:
        lacking = _lacking(teaching, classes_of())
        missing = {
            row: gaps
            for row in usable
            if row not in held and (gaps := _unaware(stored.metadatas[row], lacking))
        }
        answered = [
            r
            for r in human
            if r not in held and layout.label_source(stored.metadatas[r]) is LabelSource.HUMAN
        ]
        suspect = _nearest_answer_unknown(stored, missing, answered)
    train_rows: list[int] = []
    labels: dict[str, list[str]] = {t: [] for t in targets}
    for row in usable:
        if row in held:
            continue
        row_labels = [training_label(stored.metadatas[row], t, policy) for t in targets]
        if any(label is None for label in row_labels):
            counts["no usable label"] += 1
            continue
        if row in suspect:
            counts["model label near an answer of a class that model never knew"] += 1
            continue
        if any(label in too_few.get(t, {}) for t, label in zip(targets, row_labels, strict=True)):
            counts["new class below the minimum"] += 1
            continue
        train_rows.append(row)
        for target, label in zip(targets, row_labels, strict=True):
            labels[target].append(str(label))
        source = layout.label_source(stored.metadatas[row])
        counts[f"train ({source.value} labels)"] += 1
    counts["held out (human)"] = len(held) - len(audited)
    if audited:
        counts["held out (audited)"] = len(audited)
    if seen:
        counts["not held out (the champion trained on them)"] = len(seen & set(human))
    counts["stored"] = len(stored.ids)
    return Selection(train_rows, labels, held_out, dict(counts), new_labels, too_few, audit)


def _classes_of(registry: ModelRegistry, stored: StoredTickets) -> dict[str, dict[str, list[str]]]:
    """The classes each model version that labelled a stored ticket knew, per target, read
    from the registry (a version it no longer holds is left out)."""
    versions = {str(m["model_version"]) for m in stored.metadatas if m.get("model_version")}
    held = set(registry.versions())
    return {v: dict(registry.metadata(v).labels) for v in sorted(versions & held)}


def _nearest_answer_unknown(
    stored: StoredTickets,
    missing: Mapping[int, Mapping[str, Collection[str]]],
    answered: Sequence[int],
    chunk: int = 1_024,
) -> set[int]:
    """The rows of ``missing`` whose nearest ``answered`` row (cosine of the stored vectors)
    has a person's label, for some target, among the classes ``missing[row]`` says the model
    that labelled the row did not know."""
    rows = list(missing)
    if not rows or not answered:
        return set()
    unit = _unit_rows(stored.vectors[np.asarray(answered)])
    out: set[int] = set()
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        nearest = (_unit_rows(stored.vectors[np.asarray(part)]) @ unit.T).argmax(axis=1)
        for row, k in zip(part, nearest, strict=True):
            answer = stored.metadatas[answered[int(k)]]
            if any(
                layout.human_label(answer, target) in classes
                for target, classes in missing[row].items()
            ):
                out.add(row)
    return out


def _unit_rows(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def _lacking(
    teaching: Mapping[str, Collection[str]],
    classes_of: Mapping[str, Mapping[str, Collection[str]]],
) -> dict[str, dict[str, set[str]]]:
    """Per model version, per target, the classes in ``teaching`` that version did not know
    (versions and targets with none left out)."""
    lacking: dict[str, dict[str, set[str]]] = {}
    for version, classes in classes_of.items():
        gaps = {t: set(teach) - set(classes.get(t, ())) for t, teach in teaching.items()}
        if gaps := {t: gap for t, gap in gaps.items() if gap}:
            lacking[version] = gaps
    return lacking


def _unaware(
    meta: Mapping[str, Any], lacking: Mapping[str, Mapping[str, set[str]]]
) -> dict[str, set[str]]:
    """Per target whose label on this ticket is a model's, the classes that model did not
    know (:func:`_lacking`). A version no longer in the registry is trusted (what it knew
    cannot be told)."""
    gaps = lacking.get(str(meta.get("model_version")), {})
    return {t: gap for t, gap in gaps.items() if layout.known_label(meta, t) is None}


@dataclass(frozen=True)
class DenseRows:
    """Transformer vectors of some stored rows: ``vectors[position[row]]`` is row's."""

    vectors: npt.NDArray[np.float32]
    position: Mapping[int, int]

    def of(self, rows: Sequence[int]) -> npt.NDArray[np.float32]:
        return self.vectors[np.asarray([self.position[r] for r in rows], dtype=np.int64)]


def embed_rows(
    encoder: Encoder, stored: StoredTickets, rows: Sequence[int], *, show_progress: bool = True
) -> DenseRows:
    """The stored text of ``rows`` embedded with ``encoder``, :data:`EMBED_CHUNK` at a time
    into one preallocated matrix (the encoder batches inside a chunk; a bar on a terminal)."""
    unique = sorted(set(rows))
    matrix = np.zeros((len(unique), encoder.dimension), dtype=np.float32)
    bar = progress(len(unique), desc=f"re-embedding ({encoder.name})", disable=not show_progress)
    for start in range(0, len(unique), EMBED_CHUNK):
        part = unique[start : start + EMBED_CHUNK]
        matrix[start : start + len(part)] = encoder.encode(
            [stored.documents[r] or "" for r in part]
        )
        bar.update(len(part))
    bar.close()
    logger.info("re-embedded %d stored texts with %s", len(unique), encoder.name)
    return DenseRows(matrix, {row: i for i, row in enumerate(unique)})


def score_rows(
    classifier: TicketClassifier,
    stored: StoredTickets,
    labelled: Mapping[str, Sequence[tuple[int, str]]],
    dense: DenseRows | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Metrics per target on the rows that have a label for it, and the label predicted for
    each of those rows (in the order of ``labelled``: what the promotion rule's bootstrap
    resamples). With ``dense`` a cascade is scored as it serves: the stored (static) vectors
    for its first stage, the re-embedded ones for the tickets it escalates."""
    metrics: dict[str, dict[str, Any]] = {}
    predicted: dict[str, list[str]] = {}
    for target, pairs in labelled.items():
        if not pairs or target not in classifier.targets:
            continue
        rows = [r for r, _ in pairs]
        texts = [stored.documents[r] or "" for r, _ in pairs]
        truth = {target: [label for _, label in pairs]}
        static = stored.vectors[np.asarray(rows)]
        if dense is not None and classifier.first_stage is not None:
            predictions = predict_rows(classifier, dense.of(rows), texts, static)
        else:
            predictions = predict_rows(classifier, static, texts)
        metrics[target] = evaluate_predictions(classifier, predictions, truth)[target]
        predicted[target] = [p[target].label for p in predictions]
    return metrics, predicted


# Fewer held-out rows than this make a reference too small for the monitor's windows
# (DRIFT_MIN_WINDOW is 50 by default): the reference then uses every stored row.
MIN_REFERENCE_ROWS = 50


def write_stored_reference(
    reference: ReferenceSpec,
    *,
    version: str,
    classifier: TicketClassifier,
    scored: TicketClassifier,
    stored: StoredTickets,
    rows: Sequence[int],
    seed: int,
    review: ReviewPolicy,
) -> Path:
    """A challenger's drift reference from the vectors the workers stored.

    ``rows``: the held-out rows (what the model was not fitted on); when there are too few,
    every stored row. ``scored`` labels them: the classifier that reads the stored vectors
    (a cascade's first stage), as the worker's monitor records carry those vectors.
    ``review``: the policy the worker serves with.
    """
    chosen = list(rows) if len(rows) >= MIN_REFERENCE_ROWS else list(range(len(stored.ids)))
    index = np.asarray(chosen, dtype=np.int64)
    texts = [stored.documents[r] or "" for r in chosen]
    predictions = scored.predict(stored.vectors[index], texts if scored.uses_text else None)
    sample = predictions_sample(
        predictions,
        targets=classifier.targets,
        vectors=stored.vectors[index],
        texts=texts,
        languages=[_language(stored.metadatas[r]) for r in chosen],
        cuts=review.cuts(classifier),
    )
    return reference.write(version, sample, seed=seed)


def _language(metadata: Mapping[str, Any]) -> str | None:
    value = metadata.get("language")
    return str(value) if value is not None else None


def _input_dimension(classifier: TicketClassifier) -> int | None:
    """The vector width a classifier's heads read (None when it cannot tell)."""
    if classifier.features is not None:
        return classifier.features.dimension
    coef = getattr(next(iter(classifier.heads.values())), "coef_", None)
    return int(coef.shape[1]) if coef is not None else None


def with_first_stage(champion: TicketClassifier, first: TicketClassifier) -> TicketClassifier:
    """The champion cascade with ``first`` as its first stage (same thresholds, same
    transformer stage). Refused when ``first`` learned a class the transformer stage lacks:
    the escalated tickets could never get it; :func:`retrain` with the transformer encoder
    refits both stages instead."""
    for target in first.targets:
        new = set(first.labels(target)) - set(champion.labels(target))
        if new:
            raise RetrainError(
                f"{target}: feedback introduced {sorted(new)}, which the cascade's transformer "
                "stage does not know: retrain with the transformer encoder (dense_encoder; "
                "ticketflow retrain loads it for a cascade) so both stages learn it"
            )
    challenger = copy.copy(champion)
    challenger.first_stage = first
    return challenger


def decide(  # noqa: PLR0913
    champion: Mapping[str, Mapping[str, Mapping[str, Any]]],
    challenger: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    margin: float,
    tolerance: float,
    min_n: int,
    no_regression: Collection[str] = (),
    min_support: int = 0,
    gains: Mapping[str, npt.NDArray[np.float64]] | None = None,
    confidence: float = 0.0,
) -> tuple[bool, list[str]]:
    """Promote only if, on every evaluation set, mean macro-F1 improves by ``margin`` and no
    class's F1 drops by more than ``tolerance``. Returns (promote, readable reasons).

    The sets named in ``no_regression`` (the tickets of the classes the champion knows, when
    the challenger learned a new one) need only not lose more than ``margin``: the gain a new
    class brings is on its own tickets, which the full sets hold, and the champion's lack of
    a class is no reason to keep it. A class with fewer than ``min_support`` tickets in a set
    is not judged on its own there (it still counts in the macro-F1).

    ``gains``: per evaluation set, the challenger's gain in mean macro-F1 on paired bootstrap
    resamples (:func:`set_gains`). Where a set must improve by ``margin``, the reasons say in
    how many of them the gain is above 0, and it must be in at least ``confidence`` of them:
    a margin alone is smaller than the noise of a few dozen tickets."""
    ok = True
    reasons: list[str] = []
    if not challenger:
        return False, ["no evaluation set with human labels: nothing to compare on"]
    for name, targets in challenger.items():
        n = min(m["n"] for m in targets.values()) if targets else 0
        if n < min_n:
            ok = False
            reasons.append(f"{name}: only {n} labelled tickets, need at least {min_n}")
            continue
        old = float(np.mean([champion[name][t]["macro_f1"] for t in targets]))
        new = float(np.mean([m["macro_f1"] for m in targets.values()]))
        gain = new - old
        needed = -margin if name in no_regression else margin
        verdict = "≥" if gain >= needed else "<"
        reasons.append(
            f"{name}: macro-F1 {new:.3f} vs champion {old:.3f} "
            f"(gain {gain:+.3f} {verdict} {'-' if needed < 0 else ''}margin {margin:.3f})"
        )
        passed = gain >= needed
        resampled = (gains or {}).get(name)
        if not passed and name.startswith(AUDIT) and resampled is not None and len(resampled):
            worse = float(np.mean(resampled < 0))
            sure = worse >= AUDIT_VETO_CONFIDENCE
            reasons.append(
                f"{name}: worse in {worse:.0%} of {len(resampled)} bootstrap resamples "
                f"({'≥' if sure else '<'} {AUDIT_VETO_CONFIDENCE:.0%}: "
                f"{'a veto' if sure else 'no veto'})"
            )
            passed = not sure  # a loss the resamples are not sure of is no veto
        ok = ok and passed
        if name not in no_regression and resampled is not None and len(resampled):
            above = float(np.mean(resampled > 0))
            held = f"{'≥' if above >= confidence else '<'} confidence {confidence:.0%}"
            reasons.append(
                f"{name}: gain above 0 in {above:.0%} of {len(resampled)} bootstrap "
                f"resamples ({held if confidence > 0 else 'not required'})"
            )
            ok = ok and above >= confidence
        for target, metrics in targets.items():
            before = champion[name][target]["per_class"]
            unjudged: list[str] = []
            for label, row in metrics["per_class"].items():
                if row.get("support", 0) <= 0 or label not in before:
                    continue
                if row["support"] < min_support:
                    unjudged.append(label)
                    continue
                drop = before[label]["f1-score"] - row["f1-score"]
                if drop > tolerance:
                    ok = False
                    reasons.append(
                        f"{name}: {target}={label!r} F1 drops {before[label]['f1-score']:.3f} "
                        f"-> {row['f1-score']:.3f} (more than the tolerance {tolerance:.3f})"
                    )
            if unjudged:
                reasons.append(
                    f"{name}: {target} classes with fewer than {min_support} tickets not "
                    f"judged alone: {', '.join(repr(c) for c in sorted(unjudged))}"
                )
    return ok, reasons


def set_gains(
    labelled: Mapping[str, Sequence[tuple[int, str]]],
    before: Mapping[str, Sequence[str]],
    after: Mapping[str, Sequence[str]],
    *,
    seed: int,
) -> npt.NDArray[np.float64]:
    """The gain in mean macro-F1 over the targets on paired bootstrap resamples of one
    evaluation set (each target's rows resampled on their own, :func:`bootstrap_gains`)."""
    per_target = [
        bootstrap_gains([label for _, label in pairs], before[t], after[t], seed=seed + i)
        for i, (t, pairs) in enumerate(labelled.items())
        if t in before and t in after
    ]
    if not per_target:
        return np.zeros(0)
    mean: npt.NDArray[np.float64] = np.mean(per_target, axis=0)
    return mean


@dataclass
class RetrainResult:
    champion: str
    challenger: str
    promote: bool
    decision: str
    reasons: list[str]
    report: dict[str, Any]
    json_path: Path | None = None
    markdown_path: Path | None = None


def fingerprint(stored: StoredTickets, rows: Sequence[int], labels: Mapping[str, list[str]]) -> str:
    digest = hashlib.sha256()
    for i, row in enumerate(rows):
        digest.update(stored.ids[row].encode("utf-8"))
        for target in labels:
            digest.update(b"\0" + labels[target][i].encode("utf-8"))
    return digest.hexdigest()


def retrain(
    stored: StoredTickets,
    request: RetrainRequest | None = None,
    *,
    registry: ModelRegistry,
    policy: RetrainPolicy,
    review: ReviewPolicy = DEFAULT_POLICY,
    reference: ReferenceSpec | None = None,
    report_dir: Path | None = None,
    dense_encoder: Encoder | None = None,
) -> RetrainResult:
    """Fit, evaluate against the champion, register the challenger and decide.

    Promotion itself (pointer, history, announcement) is the caller's:
    :mod:`ticketflow.batch.promotion`. ``review``: the precision the challenger's cuts aim
    at where the champion set none, and the threshold the worker serves with; the
    champion's per-target precisions and gate carry over. ``reference``: where the
    challenger's drift reference goes (:func:`write_stored_reference`), so the monitor can
    evaluate its windows once it is promoted. ``dense_encoder``: a cascade champion's
    transformer encoder (the one it was trained with): both stages are then refitted, the
    transformer stage on the stored text embedded again (:func:`embed_rows`), and both
    cascades are scored as they serve. Without it a cascade refits its first stage only
    (:func:`with_first_stage`), which cannot learn a class the champion lacks.
    """
    started = time.perf_counter()
    request = request or RetrainRequest()
    config, eval_labels, seed = request.config, request.eval_labels, request.seed
    champion_version = registry.current_version()
    if champion_version is None:
        raise RetrainError("no champion in the registry: run ticketflow train first")
    champion = registry.load(champion_version)
    meta = champion.metadata
    # A cascade's store holds its first stage's (static) vectors. The transformer stage needs
    # vectors only a re-embed gives: with its encoder both stages are refitted, without it
    # the first stage only (it decides most tickets) and the transformer stage stays.
    cascade = champion.classifier.first_stage
    both_stages = cascade is not None and dense_encoder is not None
    if dense_encoder is not None and both_stages:
        _check_dense(dense_encoder, meta)
    expected_model = meta.vector_model
    expected_dimension = (
        _input_dimension(cascade) if cascade is not None else meta.embedding_dimension
    )
    if stored.embedding_model and stored.embedding_model != expected_model:
        raise RetrainError(
            f"the collection holds vectors of {stored.embedding_model!r}, the champion "
            f"{champion_version} reads {expected_model!r}"
        )
    if not stored.ids:
        raise RetrainError("the vector store is empty: nothing to retrain on")
    if expected_dimension is not None and stored.vectors.shape[1] != expected_dimension:
        raise RetrainError(
            f"stored vectors are {stored.vectors.shape[1]}-d, the champion expects "
            f"{expected_dimension}-d"
        )
    needs_text = bool(config.features.word or config.features.char) or champion.classifier.uses_text
    targets = list(meta.targets)
    exclude = set(eval_labels or {})
    index = {ticket_id: row for row, ticket_id in enumerate(stored.ids)}
    missing = sorted(exclude - set(index))
    if missing:
        raise RetrainError(
            f"{len(missing)} tickets of the evaluation file are not in the store, "
            f"e.g. {missing[:3]}"
        )
    known = {t: champion.classifier.labels(t) for t in targets}
    trained = registry.training_rows(champion_version)
    seen = (
        []
        if trained is None
        else [
            row
            for row, ticket_id in enumerate(stored.ids)
            if trained.contains(ticket_id=ticket_id, text=stored.documents[row])
        ]
    )
    selection = select(
        stored,
        targets,
        policy,
        needs_text=needs_text,
        exclude=exclude,
        seed=seed,
        known=known,
        seen=seen,
        classes_of=partial(_classes_of, registry, stored),
    )
    for target, rare in selection.too_few.items():
        for label, n in rare.items():
            logger.warning(
                "%s=%r: people named this new class %d times, fewer than "
                "RETRAIN_MIN_NEW_CLASS_EXAMPLES=%d: its tickets are left out of training",
                target,
                label,
                n,
                policy.min_new_class_examples,
            )
    if len(selection.train_rows) < 10:
        raise RetrainError(
            f"only {len(selection.train_rows)} tickets with usable labels to train on "
            f"({selection.counts}); send feedback or lower RETRAIN_MIN_PROBABILITY"
        )
    texts = [stored.documents[r] or "" for r in selection.train_rows]
    evaluations: dict[str, dict[str, list[tuple[int, str]]]] = {HELD_OUT: selection.held_out}
    audit_n = len(selection.audit.get(targets[0], []))
    if audit_n >= policy.min_holdout:
        evaluations[AUDIT] = selection.audit
    elif audit_n:
        logger.info(
            "%d audited tickets answered, fewer than RETRAIN_MIN_HOLDOUT=%d: not judged on yet",
            audit_n,
            policy.min_holdout,
        )
    if eval_labels:
        evaluations[EVAL_FILE] = {
            t: [(index[i], labels[t]) for i, labels in eval_labels.items() if t in labels]
            for t in targets
        }
    dense: DenseRows | None = None
    embed_seconds = 0.0
    if both_stages and dense_encoder is not None:
        embed_started = time.perf_counter()
        needed = [r for sets in evaluations.values() for pairs in sets.values() for r, _ in pairs]
        dense = embed_rows(
            dense_encoder, stored, [*selection.train_rows, *needed], show_progress=request.progress
        )
        embed_seconds = time.perf_counter() - embed_started
    fit_started = time.perf_counter()
    # The champion's review policy carries over: the gate that holds a ticket and the
    # precision each target's cut aims at are the help desk's choice, not the data's. A
    # cascade's refitted first stage needs none: the champion's transformer stage keeps its
    # cuts and gate (:func:`with_first_stage`).
    carried = replace(
        review, precision_by_target=meta.review_precisions, gate=tuple(meta.review_gate)
    )
    static = stored.vectors[np.asarray(selection.train_rows)]
    escalated_share = meta.escalated_share
    # The rows whose every label is a person's (or a historical file's): the review cuts
    # are chosen on them, not on the model's own confident labels it is also trained on.
    judged = np.asarray(
        [
            all(layout.known_label(stored.metadatas[row], t) is not None for t in targets)
            for row in selection.train_rows
        ],
        dtype=bool,
    )
    try:
        fitted, cv_held_out = fit_model(
            texts,
            dense.of(selection.train_rows) if dense is not None else static,
            selection.train_labels,
            config=config,
            review=None if cascade is not None and dense is None else carried,
            seed=seed,
            judged=judged,
        )
        if dense is not None:
            # As ticketflow train builds a cascade: the first stage on the static vectors,
            # its escalation cuts chosen out-of-fold against the new transformer stage.
            escalated_share = add_first_stage(
                fitted,
                cv_held_out,
                texts,
                static,
                selection.train_labels,
                config=config,
                agreement=request.cascade_agreement,
                seed=seed,
                escalate=request.cascade_escalate,
            )
    except ValueError as exc:
        raise RetrainError(f"cannot fit a challenger: {exc}") from exc
    if dense is not None:
        challenger = challenger_scored = fitted
        champion_scored = champion.classifier
    elif cascade is not None:
        challenger = with_first_stage(champion.classifier, fitted)
        # What changed, and what the stored vectors can score: the first stages.
        champion_scored, challenger_scored = cascade, fitted
    else:
        challenger = challenger_scored = fitted
        champion_scored = champion.classifier
    fit_seconds = time.perf_counter() - fit_started
    learned = {
        t: sorted(set(challenger.labels(t)) - set(known[t]))
        for t in targets
        if set(challenger.labels(t)) - set(known[t])
    }
    if learned:
        # Compared also where the champion could be right: the tickets of its classes.
        for name in list(evaluations):
            evaluations[name + KNOWN_TO_BOTH] = {
                t: [(r, label) for r, label in pairs if label in known[t]]
                for t, pairs in evaluations[name].items()
            }
    champion_metrics: dict[str, dict[str, dict[str, Any]]] = {}
    challenger_metrics: dict[str, dict[str, dict[str, Any]]] = {}
    gains: dict[str, npt.NDArray[np.float64]] = {}
    for name, labelled in evaluations.items():
        new, after = score_rows(challenger_scored, stored, labelled, dense)
        if new:
            challenger_metrics[name] = new
            champion_metrics[name], before = score_rows(champion_scored, stored, labelled, dense)
            if not name.endswith(KNOWN_TO_BOTH) or name.startswith(AUDIT):
                gains[name] = set_gains(labelled, before, after, seed=seed)
            if name.endswith(KNOWN_TO_BOTH):
                # Averaged over the champion's classes: the new class has no ticket here,
                # and its F1 of 0 would count against the challenger for knowing it.
                for metrics in (new, champion_metrics[name]):
                    for target, scores in metrics.items():
                        per_class = scores["per_class"]
                        shared = [per_class[c]["f1-score"] for c in known[target] if c in per_class]
                        scores["macro_f1"] = float(np.mean(shared)) if shared else 0.0
    promote, reasons = decide(
        champion_metrics,
        challenger_metrics,
        margin=policy.margin,
        tolerance=policy.class_tolerance,
        min_n=policy.min_holdout,
        # The audited tickets are the ones the champion was sure of: a challenger need not
        # gain there, only not lose (its gain is on what the champion was unsure of).
        no_regression={n for n in evaluations if n.endswith(KNOWN_TO_BOTH) or n.startswith(AUDIT)},
        min_support=policy.min_class_support,
        gains=gains,
        confidence=policy.confidence,
    )
    reasons.extend(new_class_lines(selection, learned, challenger_metrics, policy))
    decision = "promoted" if promote else "rejected"
    force = request.force
    if force and not promote:
        decision = "forced"
        reasons.append("promoted anyway: --force")

    data_sha = fingerprint(stored, selection.train_rows, selection.train_labels)
    version = base = new_version(data_sha, datetime.now(UTC))
    for n in range(2, 100):  # two runs in one second on the same data
        if not registry.path(version).exists():
            break
        version = f"{base}-{n}"
    # A copy of the champion's metadata: the serving contract (encoder, backend, dimension,
    # text length...) stays the same, and fields this module does not know carry over.
    metadata = meta.model_copy(
        update={
            "version": version,
            "created_at": datetime.now(UTC),
            "labels": {t: challenger.labels(t) for t in targets},
            "classifier": challenger.description,
            "training_config": config.name,
            "review_precision": review.precision,
            "review_thresholds": challenger.review_thresholds,
            # Coverage at the cuts is measured by ticketflow train on its test part; a
            # challenger has none of its own, so it must not inherit the champion's.
            "review_routing": None,
            # The champion's lineage names its training file, not the stored tickets this
            # challenger is fit on; retraining records none of its own yet.
            "lineage": None,
            "train_seconds": {"embed": embed_seconds, "fit": fit_seconds},
            "escalation_thresholds": challenger.escalation_thresholds,
            "escalated_share": escalated_share,
            "new_labels": learned,
            "library_versions": library_versions(),
            "data_path": request.source,
            "data_sha256": data_sha,
            "n_train": len(selection.train_rows),
            "n_test": len(selection.held_out.get(targets[0], [])),
            "n_out_of_fold": out_of_fold_rows(cv_held_out, len(selection.train_rows)),
            "metrics": {},
            "model_sha256": "",
        }
    )
    registry.save(
        challenger, metadata, metrics=challenger_metrics.get(HELD_OUT, {}), make_current=False
    )
    # As ticketflow train does: live accuracy leaves the challenger's training rows out.
    registry.save_training_rows(
        version,
        TrainingRows.of(
            [stored.ids[r] for r in selection.train_rows],
            [d for r in selection.train_rows if (d := stored.documents[r])],
        ),
    )
    if reference is not None:
        write_stored_reference(
            reference,
            version=version,
            classifier=challenger,
            # What reads the stored vectors: a cascade's first stage (the transformer stage
            # that was refitted on the re-embedded text cannot).
            scored=challenger.first_stage if challenger.first_stage is not None else challenger,
            stored=stored,
            rows=sorted({r for pairs in selection.held_out.values() for r, _ in pairs}),
            seed=seed,
            review=review,
        )
    report = {
        "run_at": datetime.now(UTC).isoformat(),
        "champion": champion_version,
        "challenger": version,
        "decision": decision,
        "reasons": reasons,
        "policy": policy.__dict__,
        "training_config": config.name,
        "counts": selection.counts,
        "new_classes": {
            t: {"answers": n, "learned": learned.get(t, [])}
            for t, n in selection.new_labels.items()
        },
        "seconds": {
            "embed": embed_seconds,
            "fit": fit_seconds,
            "total": time.perf_counter() - started,
        },
        "metrics": {
            name: {"champion": champion_metrics[name], "challenger": challenger_metrics[name]}
            for name in challenger_metrics
        },
    }
    result = RetrainResult(
        champion=champion_version,
        challenger=version,
        promote=promote or force,
        decision=decision,
        reasons=reasons,
        report=report,
    )
    if report_dir is not None:
        result.json_path, result.markdown_path = write_report(report_dir, report)
    logger.info("retrain: %s %s (%s)", version, decision, "; ".join(reasons))
    return result


def _check_dense(encoder: Encoder, meta: Any) -> None:
    """The transformer stage is refitted on vectors of the encoder it serves with, or not."""
    problems = []
    if encoder.name != meta.embedding_model:
        problems.append(f"encoder {encoder.name!r} != {meta.embedding_model!r}")
    if encoder.dimension != meta.embedding_dimension:
        problems.append(f"dimension {encoder.dimension} != {meta.embedding_dimension}")
    sha = encoder_sha256(encoder)
    if sha and meta.encoder_sha256 and sha != meta.encoder_sha256:
        problems.append(f"encoder graph sha256 {sha[:12]} != {meta.encoder_sha256[:12]}")
    if problems:
        raise RetrainError(
            f"the transformer encoder does not match the champion {meta.version}: "
            + "; ".join(problems)
        )


def new_class_lines(
    selection: Selection,
    learned: Mapping[str, Sequence[str]],
    metrics: Mapping[str, Mapping[str, Mapping[str, Any]]],
    policy: RetrainPolicy,
) -> list[str]:
    """Readable lines on the classes people introduced: learned (with their held-out F1) or
    left out for want of examples."""
    lines = []
    for target, answers in selection.new_labels.items():
        for label, n in answers.items():
            if label in learned.get(target, []):
                scores = [
                    f"{name} F1 {row['f1-score']:.3f} on {int(row['support'])}"
                    for name, targets in metrics.items()
                    if not name.endswith(KNOWN_TO_BOTH)
                    for row in [targets.get(target, {}).get("per_class", {}).get(label)]
                    if row is not None and row.get("support", 0) > 0
                ]
                shown = "; ".join(scores) or "no held-out ticket of it"
                lines.append(f"new class {target}={label!r} learned from {n} labels: {shown}")
            elif n < policy.min_new_class_examples:
                lines.append(
                    f"new class {target}={label!r} NOT learned: {n} labels, fewer than "
                    f"RETRAIN_MIN_NEW_CLASS_EXAMPLES={policy.min_new_class_examples}; its "
                    "tickets are left out of training"
                )
    return lines


def write_report(directory: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{report['challenger']}"
    json_path = directory / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    markdown_path = directory / f"{stem}.md"
    markdown_path.write_text(markdown(report), encoding="utf-8")
    return json_path, markdown_path


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"# Retrain {report['run_at']}: {report['decision']}",
        "",
        f"- champion: `{report['champion']}`",
        f"- challenger: `{report['challenger']}` ({report['training_config']})",
        f"- data: {', '.join(f'{k} {v}' for k, v in sorted(report['counts'].items()))}",
        f"- re-embed {report['seconds'].get('embed', 0.0):.1f}s, "
        f"fit {report['seconds']['fit']:.1f}s, run {report['seconds']['total']:.1f}s",
        "",
        "## Decision",
        "",
        *[f"- {reason}" for reason in report["reasons"]],
    ]
    for name, pair in report["metrics"].items():
        lines += ["", f"## {name}", ""]
        for target, new in pair["challenger"].items():
            old = pair["champion"][target]
            lines += [
                f"**{target}** (n={new['n']}): macro-F1 champion {old['macro_f1']:.3f}, "
                f"challenger {new['macro_f1']:.3f}; accuracy {old['accuracy']:.3f} -> "
                f"{new['accuracy']:.3f}",
                "",
                "| class | support | champion F1 | challenger F1 |",
                "|---|---:|---:|---:|",
            ]
            for label, row in new["per_class"].items():
                before = old["per_class"].get(label, {}).get("f1-score")
                shown = f"{before:.3f}" if before is not None else "–"
                lines.append(
                    f"| {label} | {int(row['support'])} | {shown} | {row['f1-score']:.3f} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def load_eval_labels(path: Path, targets: Sequence[str]) -> dict[str, dict[str, str]]:
    """A JSONL / CSV / Parquet file with ``ticket_id`` and one column per target; a file
    without them is bad input (``InputError``: exit 2), as for every command."""
    from ticketflow.data.datasets import read_table
    from ticketflow.data.errors import InputError

    frame = read_table(path)
    if "ticket_id" not in frame.columns:
        raise InputError(f"{path}: needs a ticket_id column (vectors come from the store)")
    present = [t for t in targets if t in frame.columns]
    if not present:
        raise InputError(f"{path}: no column for any of the targets {list(targets)}")
    labels: dict[str, dict[str, str]] = {}
    for record in frame.to_dict("records"):
        row = {t: str(record[t]) for t in present if _present(record.get(t))}
        if row:
            labels[str(record["ticket_id"])] = row
    return labels


def _present(value: Any) -> bool:
    return value is not None and value == value and str(value).strip() != ""  # NaN != NaN
