"""Training: split, embed once for all targets, fit, evaluate, register."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from ticketflow.batch.evaluate import (
    evaluate_predictions,
    majority_baseline,
    predict_rows,
    review_routing,
    scored,
)
from ticketflow.data.datasets import MISSING_LABEL, LabeledData
from ticketflow.models.cascade import CascadeEscalate
from ticketflow.models.classifier import TicketClassifier
from ticketflow.models.embedding import Encoder
from ticketflow.models.encoders import encoder_backend, encoder_max_tokens, encoder_sha256
from ticketflow.models.features import TextFeatures
from ticketflow.models.recipe import (
    MIN_CV_CLASS_ROWS,
    ModelConfig,
    OutOfFold,
    add_first_stage,
    fit_model,
    out_of_fold_confidence,
    out_of_fold_rows,
    too_small_to_calibrate,
)
from ticketflow.models.registry import (
    Lineage,
    ModelMetadata,
    ModelRegistry,
    PromotionRecord,
    ReviewRouting,
    TrainingRows,
    new_version,
    sha256_file,
)
from ticketflow.models.review import DEFAULT_POLICY, ReviewPolicy
from ticketflow.models.text import build_texts
from ticketflow.monitoring.reference import ReferenceSpec
from ticketflow.monitoring.sample import predictions_sample

logger = logging.getLogger(__name__)

_VERSIONED_LIBRARIES = (
    "scikit-learn",
    "sentence-transformers",
    "torch",
    "onnxruntime",
    "numpy",
    "ticketflow",
)


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float] | None = None
    review: ReviewRouting | None = None  # what the review cuts let through (also in metadata)
    # The registry's record of the version becoming current (None with make_current=False):
    # what an announcement of it is built from.
    promotion: PromotionRecord | None = None
    # What the user must know about this model (rare classes, a target left uncalibrated):
    # printed by ``ticketflow train`` and kept in the metadata (``notes``).
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrainRequest:
    """What to train: the labelled data, how it is split, and what is fitted on it.

    ``data_path``: the file ``data`` was read from (its sha256 names the version);
    ``cascade_agreement``: with a static encoder, how often the first stage must give the
    transformer stage's label to keep a ticket; ``cascade_escalate``: whose unsure answer
    escalates, every target's or the review gate's (:func:`add_first_stage`).
    """

    data: LabeledData
    max_text_chars: int
    data_path: Path | None = None
    test_size: float = 0.2
    seed: int = 42
    config: ModelConfig = field(default_factory=ModelConfig)
    cascade_agreement: float = 0.97
    cascade_escalate: CascadeEscalate = "gate"
    # How ``data`` was read (recorded in the model's lineage): the row limit and the column
    # mapping (field -> file column; empty: the defaults).
    limit: int | None = None
    column_mapping: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldOutRows:
    """The test part's inputs, row-aligned: what the drift reference is scored on."""

    vectors: npt.NDArray[np.float32]
    texts: Sequence[str]
    languages: Sequence[str | None]
    static_vectors: npt.NDArray[np.float32] | None = None


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the source tree this package runs from; None when it is not a git
    checkout or git is missing. Best effort: lineage never fails a training run."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def lineage(request: TrainRequest, fingerprint: str) -> Lineage:
    """Where the model came from: split, file, column mapping and source commit."""
    return Lineage(
        seed=request.seed,
        test_size=request.test_size,
        limit=request.limit,
        column_mapping=dict(request.column_mapping),
        data_path=str(request.data_path.resolve()) if request.data_path else None,
        data_sha256=fingerprint,
        git_commit=git_commit(),
    )


def fit_partial(
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    labels: dict[str, list[str]],
    rows: Sequence[Sequence[int]],
    *,
    config: ModelConfig,
    review: ReviewPolicy | None,
    seed: int,
) -> tuple[TicketClassifier, dict[str, OutOfFold], dict[str, OutOfFold]]:
    """:func:`fit_model` where target ``labels[t]`` is known on ``rows[t]`` only (in the
    order of ``labels``): the targets known on every row are fitted together, each other
    one on its own rows, all on one set of TF-IDF blocks fitted on every text, and merged.

    Returns the classifier, the out-of-fold predictions aligned on every row (the fully
    labelled targets': what the review gate's routing is scored on) and those of every target
    (for :func:`calibration_notes`)."""
    targets = list(labels)
    n = len(texts)
    known = dict(zip(targets, rows, strict=True))
    whole = [t for t in targets if len(known[t]) == n]
    if len(whole) == len(targets):
        classifier, held_out = fit_model(
            texts, vectors, labels, config=config, review=review, seed=seed
        )
        return classifier, held_out, held_out
    shared = TextFeatures(config.features).fit(texts, vectors)
    groups = ([whole] if whole else []) + [[t] for t in targets if t not in whole]
    heads: dict[str, Any] = {}
    temperatures: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    aligned: dict[str, OutOfFold] = {}
    every: dict[str, OutOfFold] = {}
    features = None
    for group in groups:
        at = known[group[0]]
        policy = (
            replace(review, gate=tuple(t for t in review.gate if t in group))
            if review is not None
            else None
        )
        part, held_out = fit_model(
            [texts[i] for i in at],
            vectors[np.asarray(at)],
            {t: [labels[t][i] for i in at] for t in group},
            config=config,
            review=policy,
            seed=seed,
            text_blocks=shared,
        )
        features = features or part.features
        heads |= part.heads
        temperatures |= part.temperatures
        thresholds |= part.review_thresholds
        every |= held_out
        if group is whole:
            aligned |= held_out
    classifier = TicketClassifier(
        {t: heads[t] for t in targets},  # the file's order: the first target is the default gate
        features=features,
        temperatures=temperatures,
        review_thresholds=thresholds,
        review_gate=list(review.gate) if review is not None else [],
    )
    return classifier, aligned, every


def calibration_notes(
    labels: Mapping[str, Sequence[str]],
    held_out: Mapping[str, OutOfFold],
    *,
    wanted: bool,
) -> list[str]:
    """One line per target whose calibration is not what it should be: a class too rare to
    hold out (the temperature and review cut then come from the other classes), or no
    out-of-fold predictions at all (``wanted``: calibration or a review cut was asked for)."""
    notes = []
    small = too_small_to_calibrate(labels)
    for target in labels:
        if wanted and target not in held_out:
            notes.append(
                f"{target}: NOT calibrated and no review cut of its own: fewer than two of its "
                f"classes have {MIN_CV_CLASS_ROWS} training rows; it is served at "
                "REVIEW_THRESHOLD. Add labelled rows."
            )
        elif target in small:
            classes = small[target]
            notes.append(
                f"{target}: {len(classes)} class(es) with fewer than {MIN_CV_CLASS_ROWS} "
                f"training rows, too few to calibrate on: {', '.join(map(repr, classes))}. "
                f"{target}'s temperature and review cut come from its other classes; these are "
                "rarely predicted. Add labelled rows."
            )
    return notes


def stratify_labels(labels: Sequence[str]) -> Sequence[str] | None:
    """Stratify when every class can appear on both sides of the split."""
    counts = Counter(labels)
    return labels if min(counts.values()) >= 2 else None


def split_indices(
    n: int, labels: Sequence[str], *, test_size: float, seed: int
) -> tuple[list[int], list[int]]:
    indices = list(range(n))
    train, test = train_test_split(
        indices, test_size=test_size, random_state=seed, stratify=stratify_labels(labels)
    )
    return list(train), list(test)


def data_fingerprint(path: Path | None, texts: Sequence[str]) -> str:
    if path is not None and path.is_file():
        return sha256_file(path)
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def train(
    request: TrainRequest,
    *,
    encoder: Encoder,
    registry: ModelRegistry,
    review: ReviewPolicy | None = DEFAULT_POLICY,
    static_encoder: Encoder | None = None,
    reference: ReferenceSpec | None = None,
    make_current: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Split (stratified on the first target), embed once, fit, evaluate on the test part
    and register. ``review``: the precision each target's review cut aims at and the gate
    (the targets whose review holds a ticket; unset = the first target), both stored in the
    model; None fits no cuts (the model is then served at the default threshold). What the
    cuts let through, per target and for the gate, out-of-fold and on the test part, is in
    the result and the model's metadata (``review_routing``). ``reference``: where the drift
    monitor's reference of the held-out rows goes.

    With ``static_encoder`` the model becomes a cascade (ticketflow.models.cascade): a first
    stage on the static vectors, with escalation thresholds chosen on out-of-fold predictions so the
    first stage keeps only tickets on which it gives the transformer stage's label at least
    ``request.cascade_agreement`` of the time (ticketflow.models.cascade).
    """
    data, config, seed = request.data, request.config, request.seed
    targets = list(data.labels)
    if not targets:
        raise ValueError("no targets to train")
    n = len(data.tickets)
    if n < 10:
        raise ValueError(f"only {n} usable rows; need at least 10 to train and evaluate")
    texts = build_texts(data.tickets, max_chars=request.max_text_chars)
    train_idx, test_idx = split_indices(
        n, data.labels[targets[0]], test_size=request.test_size, seed=seed
    )
    logger.info("embedding %d tickets with %s", n, encoder.name)
    started = time.perf_counter()
    vectors = encoder.encode(texts, show_progress=progress)
    embedded = time.perf_counter()
    labels_train = {t: [data.labels[t][i] for i in train_idx] for t in targets}
    labels_test = {t: [data.labels[t][i] for i in test_idx] for t in targets}
    train_texts = [texts[i] for i in train_idx]
    unlabeled = {t: set(data.unlabeled.get(t, ())) for t in targets}
    partial = [t for t in targets if unlabeled[t]]
    if partial and static_encoder is not None:
        raise ValueError(
            f"a cascade needs every target's label on every row, and "
            f"{', '.join(f'{len(unlabeled[t])} rows lack {t}' for t in partial)}: train "
            "without the cascade (CASCADE=false) or drop those rows"
        )
    classifier, held_out, all_held_out = fit_partial(
        train_texts,
        vectors[np.asarray(train_idx)],
        labels_train,
        [[k for k, i in enumerate(train_idx) if i not in unlabeled[t]] for t in targets],
        config=config,
        review=review,
        seed=seed,
    )
    fitted = time.perf_counter()
    notes = [
        f"{t}: {len(unlabeled[t])} rows have no {t} label; they train the other targets only"
        for t in partial
    ]
    notes += calibration_notes(
        {t: [y for y in labels_train[t] if y != MISSING_LABEL] for t in targets},
        all_held_out,
        wanted=config.calibrate or review is not None,
    )
    for note in notes:
        logger.info("%s", note)  # printed by ticketflow train, once
    seconds = {"embed": embedded - started, "fit": fitted - embedded}
    static: npt.NDArray[np.float32] | None = None
    escalated_share: float | None = None
    if static_encoder is not None:
        static = static_encoder.encode(texts, show_progress=progress)
        escalated_share = add_first_stage(
            classifier,
            held_out,
            train_texts,
            static[np.asarray(train_idx)],
            labels_train,
            config=config,
            agreement=request.cascade_agreement,
            seed=seed,
            escalate=request.cascade_escalate,
        )
        seconds["cascade"] = time.perf_counter() - fitted
    logger.info(
        "embedded in %.1fs, fitted %s in %.1fs", seconds["embed"], config.name, seconds["fit"]
    )

    fingerprint = data_fingerprint(request.data_path, texts)
    version = new_version(fingerprint, datetime.now(UTC))
    directory = registry.path(version)
    # Scored as served: through the cascade when there is one.
    test_rows = np.asarray(test_idx)
    test_texts = [texts[i] for i in test_idx]
    predictions = predict_rows(
        classifier,
        vectors[test_rows],
        test_texts,
        static[test_rows] if static is not None else None,
    )
    metrics: dict[str, dict[str, Any]] = {}
    for target in targets:
        # Each target on the test rows that have its label.
        rows = [k for k, i in enumerate(test_idx) if i not in unlabeled[target]]
        truth = [labels_test[target][k] for k in rows]
        metrics |= evaluate_predictions(
            classifier, [predictions[k] for k in rows], {target: truth}, figure_dir=directory
        )
        metrics[target]["baseline"] = majority_baseline(
            [y for y in labels_train[target] if y != MISSING_LABEL],
            truth,
            classifier.labels(target),
        )
    # The gate's routing needs every target's label: the test rows that have them all.
    complete = [k for k, i in enumerate(test_idx) if not any(i in unlabeled[t] for t in targets)]
    # Without a policy of its own the model is served at the default threshold.
    served = review or DEFAULT_POLICY
    cuts = served.cuts(classifier)
    precisions = (
        {t: review.precision_of(t) for t in classifier.review_thresholds}
        if review is not None
        else {}
    )
    routed = review_routing(
        cuts=cuts,
        precision_goals=precisions,
        out_of_fold=out_of_fold_confidence(classifier, held_out, labels_train),
        test=scored(
            [predictions[k] for k in complete],
            {t: [labels_test[t][k] for k in complete] for t in targets},
        ),
    )
    metadata = ModelMetadata(
        version=version,
        created_at=datetime.now(UTC),
        targets=targets,
        labels={t: classifier.labels(t) for t in targets},
        embedding_model=encoder.name,
        embedding_dimension=encoder.dimension,
        embedding_backend=encoder_backend(encoder),
        embedding_max_tokens=encoder_max_tokens(encoder),
        encoder_sha256=encoder_sha256(encoder),
        static_model=static_encoder.name if static_encoder is not None else None,
        static_sha256=getattr(static_encoder, "sha256", None),
        escalation_thresholds=classifier.escalation_thresholds,
        escalated_share=escalated_share,
        max_text_chars=request.max_text_chars,
        classifier=classifier.description,
        training_config=config.name,
        review_precision=review.precision if review is not None else None,
        review_thresholds=classifier.review_thresholds,
        review_precisions=precisions,
        review_gate=list(cuts.gate),
        review_routing=routed,
        train_seconds=seconds,
        library_versions=library_versions(),
        data_path=str(request.data_path.resolve()) if request.data_path else None,
        data_sha256=fingerprint,
        n_train=len(train_idx),
        n_test=len(test_idx),
        n_out_of_fold=out_of_fold_rows(held_out, len(train_idx)),
        lineage=lineage(request, fingerprint),
        notes=notes,
    )
    # Atomic for the workers: the version becomes current only once every artifact is
    # written, its drift reference included; a failure before that leaves it registered but
    # never served (and the pointer where it was).
    path = registry.save(classifier, metadata, metrics=metrics, make_current=False)
    # Which rows the model saw, so live accuracy can leave them out (report performance).
    registry.save_training_rows(
        version,
        TrainingRows.of([data.tickets[i].ticket_id for i in train_idx], train_texts),
    )
    if reference is not None:
        write_held_out_reference(
            reference,
            version=version,
            classifier=classifier,
            rows=HeldOutRows(
                vectors=vectors[test_rows],
                texts=test_texts,
                languages=[data.tickets[i].language for i in test_idx],
                static_vectors=static[test_rows] if static is not None else None,
            ),
            seed=seed,
            review=served,
        )
    promotion = registry.make_trained_current(version) if make_current else None
    return TrainResult(
        version=version,
        path=path,
        metrics=metrics,
        seconds=seconds,
        review=routed,
        promotion=promotion,
        notes=notes,
    )


def write_held_out_reference(
    reference: ReferenceSpec,
    *,
    version: str,
    classifier: TicketClassifier,
    rows: HeldOutRows,
    seed: int,
    review: ReviewPolicy = DEFAULT_POLICY,
) -> Path:
    """The drift monitor's reference: what the model says about tickets it was not fit on.

    Held-out rows, because a model is over-confident on its own training rows and the
    monitor would read that gap as confidence drift. A cascade's worker publishes its static
    vectors, so those are the reference vectors then. ``review``: the policy the worker
    serves with (its threshold for targets without a cut of their own).
    """
    predictions = predict_rows(classifier, rows.vectors, rows.texts, rows.static_vectors)
    vectors = rows.vectors
    if rows.static_vectors is not None and classifier.first_stage is not None:
        vectors = rows.static_vectors
    sample = predictions_sample(
        predictions,
        targets=classifier.targets,
        vectors=vectors,
        texts=rows.texts,
        languages=rows.languages,
        cuts=review.cuts(classifier),
    )
    return reference.write(version, sample, seed=seed)
