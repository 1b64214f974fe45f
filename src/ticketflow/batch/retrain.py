"""``ticketflow retrain``: a challenger from the vectors and labels already in ChromaDB.

No ticket is embedded again: the vectors the workers stored, their model text (the Chroma
document, ``CHROMA_DOCUMENT=redacted`` or ``full``) and their labels (human corrections first,
confident model labels when allowed) are all a challenger needs. It is fitted with the same
recipe as ``ticketflow train`` (:func:`ticketflow.batch.train.fit_model`), then challenger
and champion are evaluated on human-labelled tickets the challenger never saw, and the challenger is
promoted only when it is better by a margin and no class got worse by more than a tolerance.
Every run writes a JSON and a markdown report, promoted or not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tenacity

from ticketflow.adapters.store import is_permanent
from ticketflow.batch.evaluate import evaluate_classifier
from ticketflow.batch.train import library_versions
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.recipe import ModelConfig, fit_model, out_of_fold_rows
from ticketflow.models.registry import ModelRegistry, TrainingRows, new_version
from ticketflow.models.review import DEFAULT_POLICY, ReviewPolicy
from ticketflow.monitoring.reference import ReferenceSpec
from ticketflow.monitoring.sample import predictions_sample
from ticketflow.schemas import store as layout
from ticketflow.schemas.store import LabelSource

logger = logging.getLogger(__name__)

HELD_OUT = "held-out human labels"
EVAL_FILE = "evaluation file"
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


@dataclass(frozen=True)
class RetrainRequest:
    """What a challenger is fitted with and judged on.

    ``eval_labels``: ticket id -> {target: label} of a fixed evaluation set whose vectors and
    texts are in the store; those tickets are never trained on. ``force``: promote even if
    the challenger loses. ``source``: recorded as the challenger's data.
    """

    config: ModelConfig = field(default_factory=ModelConfig)
    eval_labels: Mapping[str, Mapping[str, str]] | None = None
    force: bool = False
    seed: int = 42
    source: str = "chroma"


@dataclass
class StoredTickets:
    """Everything retraining reads from the vector store."""

    ids: list[str]
    vectors: npt.NDArray[np.float32]
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    embedding_model: str | None = None


def read_store(
    collection: Any, page_size: int = 2_000, *, attempts: int = 6, retry_delay_s: float = 2.0
) -> StoredTickets:
    """Every record of a Chroma collection: ids, stored vectors, metadata and documents.

    A read of an embedded store that a worker process is writing to can fail mid-way
    (ChromaDB: "Error executing plan: Internal error: Error finding id"), and pages shift
    under it; such a read starts over, up to ``attempts`` times, after a jittered backoff
    from ``retry_delay_s``. A permanent error (a missing collection, refused credentials)
    fails at once with its reason. A Chroma server serialises reads and writes, so the
    retries are for embedded stores shared by processes (local runs, tests)."""
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


def _label(meta: Mapping[str, Any], target: str, policy: RetrainPolicy) -> str | None:
    known = layout.known_label(meta, target)  # a person's, else a historical file's
    if known is not None:
        return known
    if not policy.use_predicted:
        return None
    predicted = layout.model_label(meta, target)
    if predicted is None or predicted[1] < policy.min_probability:
        return None
    return predicted[0]


def select(
    stored: StoredTickets,
    targets: Sequence[str],
    policy: RetrainPolicy,
    *,
    needs_text: bool,
    exclude: Collection[str] = (),
    seed: int = 42,
) -> Selection:
    """Hold out a share of the human-labelled tickets; train on the rest that has labels.

    Labels imported from a historical file (``ticketflow backfill``) count as human labels,
    for training and for the hold-out."""
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
    rng = random.Random(seed)
    # Stratify the hold-out on the first target's human label, so each class is in both parts.
    by_class: dict[str, list[int]] = defaultdict(list)
    for row in human:
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
    train_rows: list[int] = []
    labels: dict[str, list[str]] = {t: [] for t in targets}
    for row in usable:
        if row in held:
            continue
        row_labels = [_label(stored.metadatas[row], t, policy) for t in targets]
        if any(label is None for label in row_labels):
            counts["no usable label"] += 1
            continue
        train_rows.append(row)
        for target, label in zip(targets, row_labels, strict=True):
            labels[target].append(str(label))
        source = layout.label_source(stored.metadatas[row])
        counts[f"train ({source.value} labels)"] += 1
    counts["held out (human)"] = len(held)
    counts["stored"] = len(stored.ids)
    return Selection(train_rows, labels, held_out, dict(counts))


def evaluate_rows(
    classifier: TicketClassifier,
    stored: StoredTickets,
    labelled: Mapping[str, Sequence[tuple[int, str]]],
) -> dict[str, dict[str, Any]]:
    """Metrics per target on the rows that have a label for it."""
    metrics: dict[str, dict[str, Any]] = {}
    for target, pairs in labelled.items():
        if not pairs or target not in classifier.targets:
            continue
        rows = np.asarray([r for r, _ in pairs])
        texts = [stored.documents[r] or "" for r, _ in pairs]
        result = evaluate_classifier(
            classifier, stored.vectors[rows], {target: [label for _, label in pairs]}, texts=texts
        )
        metrics[target] = result[target]
    return metrics


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
    the escalated tickets could never get it."""
    for target in first.targets:
        new = set(first.labels(target)) - set(champion.labels(target))
        if new:
            raise RetrainError(
                f"{target}: feedback introduced {sorted(new)}, which the cascade's transformer "
                "stage does not know and retraining cannot teach it without re-embedding; "
                "run ticketflow train on data with these labels"
            )
    challenger = copy.copy(champion)
    challenger.first_stage = first
    return challenger


def decide(
    champion: Mapping[str, Mapping[str, Mapping[str, Any]]],
    challenger: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    margin: float,
    tolerance: float,
    min_n: int,
) -> tuple[bool, list[str]]:
    """Promote only if, on every evaluation set, mean macro-F1 improves by ``margin`` and no
    class's F1 drops by more than ``tolerance``. Returns (promote, readable reasons)."""
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
        verdict = "≥" if gain >= margin else "<"
        reasons.append(
            f"{name}: macro-F1 {new:.3f} vs champion {old:.3f} "
            f"(gain {gain:+.3f} {verdict} margin {margin:.3f})"
        )
        ok = ok and gain >= margin
        for target, metrics in targets.items():
            before = champion[name][target]["per_class"]
            for label, row in metrics["per_class"].items():
                if row.get("support", 0) <= 0 or label not in before:
                    continue
                drop = before[label]["f1-score"] - row["f1-score"]
                if drop > tolerance:
                    ok = False
                    reasons.append(
                        f"{name}: {target}={label!r} F1 drops {before[label]['f1-score']:.3f} "
                        f"-> {row['f1-score']:.3f} (more than the tolerance {tolerance:.3f})"
                    )
    return ok, reasons


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
) -> RetrainResult:
    """Fit, evaluate against the champion, register the challenger and decide.

    Promotion itself (pointer, history, announcement) is the caller's:
    :mod:`ticketflow.batch.promotion`. ``review``: the precision the challenger's cuts aim
    at where the champion set none, and the threshold the worker serves with; the
    champion's per-target precisions and gate carry over. ``reference``: where the
    challenger's drift reference goes (:func:`write_stored_reference`), so the monitor can
    evaluate its windows once it is promoted.
    """
    started = time.perf_counter()
    request = request or RetrainRequest()
    config, eval_labels, seed = request.config, request.eval_labels, request.seed
    champion_version = registry.current_version()
    if champion_version is None:
        raise RetrainError("no champion in the registry: run ticketflow train first")
    champion = registry.load(champion_version)
    meta = champion.metadata
    # A cascade's store holds its first stage's (static) vectors: retraining refits that
    # stage, which decides most tickets; the transformer stage needs vectors only a re-embed
    # could give, so it stays the champion's (``ticketflow train`` refits both).
    cascade = champion.classifier.first_stage
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
    selection = select(stored, targets, policy, needs_text=needs_text, exclude=exclude, seed=seed)
    if len(selection.train_rows) < 10:
        raise RetrainError(
            f"only {len(selection.train_rows)} tickets with usable labels to train on "
            f"({selection.counts}); send feedback or lower RETRAIN_MIN_PROBABILITY"
        )
    texts = [stored.documents[r] or "" for r in selection.train_rows]
    fit_started = time.perf_counter()
    # The champion's review policy carries over: the gate that holds a ticket and the
    # precision each target's cut aims at are the help desk's choice, not the data's. A
    # cascade's refitted first stage needs none: the champion's transformer stage keeps its
    # cuts and gate (:func:`with_first_stage`).
    carried = replace(
        review, precision_by_target=meta.review_precisions, gate=tuple(meta.review_gate)
    )
    try:
        fitted, cv_held_out = fit_model(
            texts,
            stored.vectors[np.asarray(selection.train_rows)],
            selection.train_labels,
            config=config,
            review=None if cascade is not None else carried,
            seed=seed,
        )
    except ValueError as exc:
        raise RetrainError(f"cannot fit a challenger: {exc}") from exc
    if cascade is not None:
        challenger = with_first_stage(champion.classifier, fitted)
        # What changed, and what the stored vectors can score: the first stages.
        champion_scored, challenger_scored = cascade, fitted
    else:
        challenger = challenger_scored = fitted
        champion_scored = champion.classifier
    fit_seconds = time.perf_counter() - fit_started

    evaluations: dict[str, dict[str, list[tuple[int, str]]]] = {HELD_OUT: selection.held_out}
    if eval_labels:
        evaluations[EVAL_FILE] = {
            t: [(index[i], labels[t]) for i, labels in eval_labels.items() if t in labels]
            for t in targets
        }
    champion_metrics: dict[str, dict[str, dict[str, Any]]] = {}
    challenger_metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for name, labelled in evaluations.items():
        new = evaluate_rows(challenger_scored, stored, labelled)
        if new:
            challenger_metrics[name] = new
            champion_metrics[name] = evaluate_rows(champion_scored, stored, labelled)
    promote, reasons = decide(
        champion_metrics,
        challenger_metrics,
        margin=policy.margin,
        tolerance=policy.class_tolerance,
        min_n=policy.min_holdout,
    )
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
            "train_seconds": {"embed": 0.0, "fit": fit_seconds},
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
            scored=challenger_scored,
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
        "seconds": {"fit": fit_seconds, "total": time.perf_counter() - started},
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
        f"- fit {report['seconds']['fit']:.1f}s, run {report['seconds']['total']:.1f}s",
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
