"""The reference set of a model: what its inputs and outputs looked like when it was trained.

Layout under ``<root>/<model version>/`` (``root`` defaults to ``data/reference``)::

    vectors.npy      sampled embeddings, float16, (n, dimension)
    columns.json     predicted label and confidence per target, text length, language,
                     needs_review and per target needs_review_by_target (when known),
                     row-aligned with the vectors
    meta.json        model version, reference version (content hash), size, seed, targets

Written by training and retraining (``write_sample_reference``) or by ``ticketflow drift
reference --data PATH``.
Use predictions on data the model was **not** fitted on (the held-out split, or a fresh
labelled file): a model is over-confident on its own training rows, and the monitor would
see live traffic as a confidence drift.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ticketflow.monitoring.drift import MonitorSample, subsample

logger = logging.getLogger(__name__)

VECTORS_FILE = "vectors.npy"
COLUMNS_FILE = "columns.json"
META_FILE = "meta.json"
DEFAULT_SAMPLE_SIZE = 2000


class ReferenceError(RuntimeError):
    """No reference set for this model version, or it cannot be read."""


@dataclass(frozen=True)
class ReferenceSpec:
    """Where a model's reference set goes and how many rows it keeps (DRIFT_REFERENCE_DIR,
    DRIFT_REFERENCE_SIZE): what training and retraining are told, together."""

    directory: Path
    sample_size: int = DEFAULT_SAMPLE_SIZE

    def write(self, model_version: str, sample: MonitorSample, *, seed: int = 42) -> Path:
        """:func:`write_sample_reference` into this spec's directory, at its size."""
        return write_sample_reference(
            self.directory,
            model_version=model_version,
            sample=sample,
            sample_size=self.sample_size,
            seed=seed,
        )


@dataclass
class Reference:
    model_version: str
    reference_version: str
    sample: MonitorSample
    meta: dict[str, Any]


def write_sample_reference(
    directory: Path,
    *,
    model_version: str,
    sample: MonitorSample,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 42,
) -> Path:
    """Sample at most ``sample_size`` rows of ``sample`` and write them under
    ``directory/<model_version>``. Returns the version directory (overwritten if present)."""
    full = sample
    if len(full) == 0:
        raise ValueError("an empty reference set is useless")
    sample = subsample(full, sample_size, seed)
    target = directory / model_version
    target.mkdir(parents=True, exist_ok=True)
    vectors16 = sample.vectors.astype(np.float16)
    columns = {
        "labels": sample.labels,
        "probabilities": sample.probabilities,
        "text_lengths": sample.text_lengths,
        "languages": sample.languages,
        "needs_review": sample.needs_review,
        "needs_review_by_target": sample.needs_review_by_target,
    }
    columns_text = json.dumps(columns, ensure_ascii=False)
    digest = hashlib.sha256(vectors16.tobytes() + columns_text.encode("utf-8")).hexdigest()
    meta = {
        "model_version": model_version,
        "reference_version": f"{model_version}@{digest[:12]}",
        "created_at": datetime.now(UTC).isoformat(),
        "rows": len(sample),
        "rows_available": len(full),
        "sample_size": sample_size,
        "seed": seed,
        "dimension": int(sample.vectors.shape[1]),
        "targets": sorted(sample.labels),
    }
    np.save(target / VECTORS_FILE, vectors16)
    (target / COLUMNS_FILE).write_text(columns_text, encoding="utf-8")
    (target / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    logger.info("reference %s: %d rows in %s", meta["reference_version"], len(sample), target)
    return target


def load_reference(directory: Path, model_version: str) -> Reference:
    target = directory / model_version
    if not (target / META_FILE).is_file():
        raise ReferenceError(
            f"no reference set for model {model_version} in {directory}: build one with "
            "`ticketflow drift reference --data PATH`"
        )
    try:
        meta = json.loads((target / META_FILE).read_text(encoding="utf-8"))
        columns = json.loads((target / COLUMNS_FILE).read_text(encoding="utf-8"))
        vectors = np.load(target / VECTORS_FILE).astype(np.float32)
        sample = MonitorSample(
            vectors=vectors,
            labels=columns["labels"],
            probabilities=columns["probabilities"],
            text_lengths=columns["text_lengths"],
            languages=columns["languages"],
            needs_review=columns.get("needs_review"),
            needs_review_by_target=columns.get("needs_review_by_target") or {},
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ReferenceError(f"cannot read the reference in {target}: {exc}") from exc
    return Reference(
        model_version=model_version,
        reference_version=str(meta["reference_version"]),
        sample=sample,
        meta=meta,
    )
