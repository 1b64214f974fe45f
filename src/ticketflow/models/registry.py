"""Versioned model artifacts on disk, with a ``current`` pointer and verification on load.

Layout::

    <root>/<version>/model.joblib      the fitted TicketClassifier
    <root>/<version>/metadata.json     ModelMetadata (targets, labels, encoder, sha256, metrics...)
    <root>/<version>/metrics.json      evaluation on the held-out split
    <root>/<version>/confusion-<target>.png
    <root>/<version>/training-rows.npz  64-bit hashes of the ids and texts the model was fit on
    <root>/current                     text file naming the served version
    <root>/history.jsonl               append-only: every promotion / rollback (who, when, why)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from ticketflow.models.classifier import TicketClassifier

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.json"
CURRENT_FILE = "current"
LOCK_FILE = ".lock"
HISTORY_FILE = "history.jsonl"
TRAINING_ROWS_FILE = "training-rows.npz"


class RegistryError(RuntimeError):
    """The registry has no such model, or it cannot be read."""


class ModelVerificationError(RegistryError):
    """The artifact does not match its checksum or the serving encoder."""


class Routing(BaseModel):
    """What review cuts do to a set of tickets: the share routed without a person, and how
    often the routed ones were right."""

    coverage: float  # share of the tickets at or above the cut(s): routed automatically
    precision: float | None  # share of the routed tickets whose label(s) were right; None: none
    n: int  # tickets scored


class TargetRouting(BaseModel):
    """One target's review cut and what it lets through."""

    threshold: float  # the cut the worker compares the target's probability with
    precision_goal: float | None  # what the cut was chosen for; None: REVIEW_THRESHOLD's fallback
    out_of_fold: Routing | None = None  # on the training rows' out-of-fold predictions
    test: Routing | None = None  # on the held-out test part, as served


class GateRouting(BaseModel):
    """Tickets routed by a set of targets: every one of them at or above its cut; right when
    every one of their labels was."""

    targets: list[str]
    out_of_fold: Routing | None = None  # None when a target had no out-of-fold predictions
    test: Routing | None = None


class ReviewRouting(BaseModel):
    """``ticketflow train``'s review report: per target, for the review gate (the ticket's
    ``needs_review``) and, for comparison, for all targets together."""

    targets: dict[str, TargetRouting]
    gate: GateRouting
    all_targets: GateRouting | None = None


class Lineage(BaseModel):
    """What a model was trained from and with, so that a run can be reproduced: the split,
    the file (absolute path and sha256), how its columns were read, and the source commit.
    The package versions are ``ModelMetadata.library_versions``."""

    seed: int
    test_size: float
    limit: int | None = None  # only the first N rows of the file were read
    column_mapping: dict[str, str | None] = Field(default_factory=dict)
    data_path: str | None = None  # absolute; None: the data did not come from a file
    data_sha256: str | None = None
    git_commit: str | None = None  # None: not run from a git checkout (or git missing)


class ModelMetadata(BaseModel):
    version: str
    created_at: datetime
    targets: list[str]
    labels: dict[str, list[str]]
    embedding_model: str
    embedding_dimension: int
    # Which backend produced the training vectors, and the exported graph it ran (onnx*);
    # a worker serves with the same ones (ticketflow.models.encoders).
    embedding_backend: str = "torch"
    embedding_max_tokens: int | None = None  # None (older models): the encoder's default
    encoder_sha256: str | None = None
    # The cascade's first stage: the static model it reads (ticketflow.models.static_encoder), its
    # fingerprint, and the out-of-fold share of tickets it escalated to the transformer.
    static_model: str | None = None
    static_sha256: str | None = None
    escalation_thresholds: dict[str, float] = Field(default_factory=dict)
    escalated_share: float | None = None
    max_text_chars: int
    classifier: str = "LogisticRegression"
    training_config: str | None = (
        None  # ticketflow.batch.train.ModelConfig.name of the training run
    )
    review_precision: float | None = None  # the precision the review thresholds aim at
    review_thresholds: dict[str, float] = Field(default_factory=dict)
    # Per target, the precision its threshold aims at (REVIEW_PRECISION_BY_TARGET or the above).
    review_precisions: dict[str, float] = Field(default_factory=dict)
    # The targets whose review holds a ticket; empty (older models): the first target.
    review_gate: list[str] = Field(default_factory=list)
    review_routing: ReviewRouting | None = None  # coverage at the cuts (ticketflow train)
    train_seconds: dict[str, float] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    data_path: str | None = None
    data_sha256: str | None = None
    n_train: int = 0
    n_test: int = 0
    # Training rows with out-of-fold predictions (the temperatures and cuts come from them):
    # all of n_train, or the CV sample beyond CV_MAX_ROWS. None: not recorded (older models).
    n_out_of_fold: int | None = None
    lineage: Lineage | None = None  # None: an older model, trained before it was recorded
    # Per target, the classes this model learned that the model it was retrained from did not
    # know (people's answers named them); empty for ``ticketflow train`` and older models.
    new_labels: dict[str, list[str]] = Field(default_factory=dict)
    # What training warned about (a class too rare to calibrate on...), as it printed it.
    notes: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    model_sha256: str = ""
    artifact_format: str = "joblib"  # how model.joblib was written: joblib (older) or pickle

    @property
    def vector_model(self) -> str:
        """The model whose vectors the worker stores and publishes for this model."""
        return self.static_model or self.embedding_model


class LoadedModel(BaseModel):
    model_config = {"arbitrary_types_allowed": True}

    classifier: TicketClassifier
    metadata: ModelMetadata


class PromotionRecord(BaseModel):
    """One line of ``history.jsonl``: the champion changed from ``previous`` to ``version``."""

    version: str
    previous: str | None
    action: str  # promote | rollback | train
    reason: str
    by: str
    at: datetime
    forced: bool = False
    report: str | None = None  # the retrain report that decided it, if any


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version(data_sha256: str | None, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"v{stamp}-{(data_sha256 or 'nodata')[:8]}"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    Path(tmp).replace(path)


def row_hash(value: str) -> int:
    """A stable 64-bit hash of a ticket id or model text (blake2b): what the training rows
    are recorded as, so that a registry folder holds no ticket text."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


def _sorted_hashes(values: Sequence[str]) -> npt.NDArray[np.uint64]:
    return np.unique(np.fromiter((row_hash(v) for v in values), dtype=np.uint64))


class TrainingRows:
    """The rows a model was fit on (its test part excluded), as sorted 64-bit hashes of their
    ticket ids and model texts: live accuracy leaves them out, because a model scores its
    own training rows as if it had memorised them (``ticketflow report performance``)."""

    def __init__(self, ids: npt.NDArray[np.uint64], texts: npt.NDArray[np.uint64]) -> None:
        self.ids = ids
        self.texts = texts

    @classmethod
    def of(cls, ids: Sequence[str], texts: Sequence[str]) -> TrainingRows:
        return cls(_sorted_hashes(ids), _sorted_hashes(texts))

    def __len__(self) -> int:
        return int(self.ids.size)

    @staticmethod
    def _has(hashes: npt.NDArray[np.uint64], value: str) -> bool:
        key = np.uint64(row_hash(value))
        at = int(np.searchsorted(hashes, key))
        return at < hashes.size and bool(hashes[at] == key)

    def contains(self, ticket_id: str | None = None, text: str | None = None) -> bool:
        """Whether the ticket id or the model text is one of the training rows'."""
        if ticket_id is not None and self._has(self.ids, ticket_id):
            return True
        return text is not None and self._has(self.texts, text)


class RegistryLockedError(RuntimeError):
    """Another process holds the registry's write lock."""


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        return self.root / version

    def exists(self) -> bool:
        """Whether the registry's directory is there. Reading an absent one finds no models,
        which callers that expect some (list, promote, evaluate) should report as an error."""
        return self.root.is_dir()

    @contextmanager
    def lock(self, *, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the registry's write lock (``<root>/.lock``): training, retraining, promotion
        and rollback take it, so two retrain Jobs can never decide against the same champion
        at once. Waits up to ``wait_s``, then raises :class:`RegistryLockedError`."""
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / LOCK_FILE), timeout=wait_s)
        try:
            lock.acquire()
        except Timeout as exc:
            raise RegistryLockedError(
                f"the model registry {self.root} is locked by another train, retrain or "
                f"promotion ({self.root / LOCK_FILE}); run this again when it is done"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / METADATA_FILE).is_file())

    def current_version(self) -> str | None:
        pointer = self.root / CURRENT_FILE
        if not pointer.is_file():
            return None
        return pointer.read_text(encoding="utf-8").strip() or None

    def set_current(self, version: str) -> None:
        if version not in self.versions():
            raise RegistryError(f"no model version {version!r} in {self.root}")
        _atomic_write(self.root / CURRENT_FILE, version + "\n")
        logger.info("current model is now %s", version)

    def save(
        self,
        classifier: TicketClassifier,
        metadata: ModelMetadata,
        *,
        metrics: dict[str, Any] | None = None,
        make_current: bool = True,
    ) -> Path:
        directory = self.path(metadata.version)
        directory.mkdir(parents=True, exist_ok=True)
        model_path = directory / MODEL_FILE
        if model_path.exists():
            raise RegistryError(f"model version {metadata.version!r} already exists")
        # Plain pickle, not joblib: joblib's loader is the pure-Python unpickler, a large
        # share of a worker's cold start for a hybrid model; C pickle reads it in a fraction.
        with model_path.open("wb") as handle:
            pickle.dump(classifier, handle, protocol=pickle.HIGHEST_PROTOCOL)
        metadata = metadata.model_copy(update={"artifact_format": "pickle"})
        metadata = metadata.model_copy(update={"model_sha256": sha256_file(model_path)})
        if metrics is not None:
            metadata = metadata.model_copy(update={"metrics": metrics})
            _atomic_write(directory / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        _atomic_write(directory / METADATA_FILE, metadata.model_dump_json(indent=2) + "\n")
        if make_current:
            self.make_trained_current(metadata.version)
        return directory

    def save_training_rows(self, version: str, rows: TrainingRows) -> Path:
        """Write ``rows`` beside model ``version`` (a few bytes per row, compressed)."""
        path = self.path(version) / TRAINING_ROWS_FILE
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, ids=rows.ids, texts=rows.texts)
        Path(tmp).replace(path)
        return path

    def training_rows(self, version: str) -> TrainingRows | None:
        """The rows ``version`` was fit on; None for a model trained before they were
        recorded (or an unknown version)."""
        path = self.path(version) / TRAINING_ROWS_FILE
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return TrainingRows(stored["ids"].astype(np.uint64), stored["texts"].astype(np.uint64))

    def make_trained_current(self, version: str) -> PromotionRecord:
        """Point ``current`` at a freshly trained ``version`` and record it in the history;
        returns the record (what an announcement is built from)."""
        previous = self.current_version()
        self.set_current(version)
        entry = PromotionRecord(
            version=version,
            previous=previous,
            action="train",
            reason="trained and made current (ticketflow train)",
            by=os.environ.get("USER") or "ticketflow",
            at=datetime.now(UTC),
        )
        self.record(entry)
        return entry

    def metadata(self, version: str) -> ModelMetadata:
        path = self.path(version) / METADATA_FILE
        if not path.is_file():
            raise RegistryError(f"no model version {version!r} in {self.root}")
        return ModelMetadata.model_validate_json(path.read_text(encoding="utf-8"))

    def load(
        self,
        version: str | None = None,
        *,
        expect_embedding_model: str | None = None,
        expect_dimension: int | None = None,
    ) -> LoadedModel:
        """Load and verify a model; ``version=None`` means the current one."""
        version = version or self.current_version()
        if version is None:
            raise RegistryError(
                f"no current model in {self.root}: train one first (ticketflow train --data ...)"
            )
        metadata = self.verify(version)
        model_path = self.path(version) / MODEL_FILE
        if (
            expect_embedding_model is not None
            and metadata.embedding_model != expect_embedding_model
        ):
            raise ModelVerificationError(
                f"model {version} was trained on embeddings of {metadata.embedding_model!r}, "
                f"but the worker encodes with {expect_embedding_model!r}"
            )
        if expect_dimension is not None and metadata.embedding_dimension != expect_dimension:
            raise ModelVerificationError(
                f"model {version} expects {metadata.embedding_dimension}-d vectors, "
                f"the encoder gives {expect_dimension}-d"
            )
        # Unpickling runs code: only after the checksum above matched the metadata.
        if metadata.artifact_format == "pickle":
            with model_path.open("rb") as handle:
                classifier = pickle.load(handle)
        else:  # models saved before the switch
            classifier = joblib.load(model_path)
        if not isinstance(classifier, TicketClassifier):
            raise ModelVerificationError(f"model {version}: {MODEL_FILE} is not a TicketClassifier")
        return LoadedModel(classifier=classifier, metadata=metadata)

    # --- promotion history -------------------------------------------------------------------

    def history(self) -> list[PromotionRecord]:
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [PromotionRecord.model_validate_json(line) for line in lines if line.strip()]

    def record(self, entry: PromotionRecord) -> None:
        """Append one line; the file is never rewritten (O_APPEND, one write per record)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = (entry.model_dump_json() + "\n").encode("utf-8")
        fd = os.open(self.root / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def promote(
        self,
        version: str,
        *,
        by: str,
        reason: str,
        action: str = "promote",
        forced: bool = False,
        report: str | None = None,
        now: datetime | None = None,
    ) -> PromotionRecord:
        """Make ``version`` current (its checksum verified first) and append it to the history."""
        previous = self.current_version()
        self.verify(version)
        self.set_current(version)
        entry = PromotionRecord(
            version=version,
            previous=previous,
            action=action,
            reason=reason,
            by=by,
            at=now or datetime.now(UTC),
            forced=forced,
            report=report,
        )
        self.record(entry)
        return entry

    def previous_champion(self) -> str | None:
        """The version that was current before the current one (what ``rollback`` returns to)."""
        # Replay the history as a stack of champions: a promotion pushes, a rollback pops.
        stack: list[str] = []
        for entry in self.history():
            if entry.action == "rollback":
                while stack and stack[-1] != entry.version:
                    stack.pop()
                if not stack:
                    stack.append(entry.version)
                continue
            if not stack and entry.previous:
                stack.append(entry.previous)
            if not stack or stack[-1] != entry.version:
                stack.append(entry.version)
        current = self.current_version()
        if not stack or stack[-1] != current:
            return None  # the pointer was changed outside promote(): no reliable predecessor
        return stack[-2] if len(stack) >= 2 else None

    def verify(self, version: str) -> ModelMetadata:
        """Checksum only (no unpickling): the artifact on disk is the one the metadata names."""
        metadata = self.metadata(version)
        model_path = self.path(version) / MODEL_FILE
        actual = sha256_file(model_path) if model_path.is_file() else "missing"
        if actual != metadata.model_sha256:
            raise ModelVerificationError(
                f"model {version}: {MODEL_FILE} sha256 {actual[:12]} does not match "
                f"metadata {metadata.model_sha256[:12]}; refusing to load it"
            )
        return metadata
