"""Full Evidently HTML reports (with plots) of one window against the reference.

Heavy (the embedding plot runs a t-SNE): only when drift was detected, rate-limited by
:class:`ReportLimiter`, and on demand (``ticketflow drift report``). Rows are capped at
``max_rows`` per side to bound the cost.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ticketflow.monitoring.drift import EMBEDDING_THRESHOLDS, MonitorSample, subsample

logger = logging.getLogger(__name__)

EMBEDDINGS = "text_embedding"


def sample_frame(sample: MonitorSample) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """One row per ticket; returns (frame, numerical, categorical, embedding columns)."""
    columns: dict[str, list[object]] = {}
    numerical: list[str] = []
    categorical: list[str] = []
    for target, labels in sorted(sample.labels.items()):
        columns[f"label_{target}"] = list(labels)
        categorical.append(f"label_{target}")
    for target, probs in sorted(sample.probabilities.items()):
        columns[f"confidence_{target}"] = list(probs)
        numerical.append(f"confidence_{target}")
    columns["text_length"] = list(sample.text_lengths)
    numerical.append("text_length")
    columns["language"] = [(x or "unknown").lower() for x in sample.languages]
    categorical.append("language")
    if sample.needs_review is not None:
        columns["needs_review"] = ["yes" if x else "no" for x in sample.needs_review]
        categorical.append("needs_review")
    frame = pd.DataFrame(columns)
    embedding_columns = [f"e{i}" for i in range(sample.vectors.shape[1])]
    vectors = pd.DataFrame(sample.vectors.astype("float64"), columns=embedding_columns)
    return pd.concat([frame, vectors], axis=1), numerical, categorical, embedding_columns


def report_path(directory: Path, model_version: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model_version)
    return directory / f"drift-{safe}-{stamp}.html"


def write_report(
    reference: MonitorSample,
    current: MonitorSample,
    path: Path,
    *,
    model_version: str,
    reference_version: str,
    embedding_threshold: float = EMBEDDING_THRESHOLDS["mmd"],
    max_rows: int = 300,
) -> Path:
    """Run an Evidently ``Report`` (data drift + embedding drift) and save it as HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics.embeddings import EmbeddingsDrift, MMDDriftMethod
    from evidently.presets import DataDriftPreset

    ref_frame, numerical, categorical, embedding_columns = sample_frame(
        subsample(reference, max_rows, seed=0)
    )
    cur_frame, *_ = sample_frame(subsample(current, max_rows, seed=0))
    shared = [c for c in numerical + categorical if c in cur_frame.columns]
    definition = DataDefinition(
        numerical_columns=[c for c in numerical if c in shared],
        categorical_columns=[c for c in categorical if c in shared],
        embeddings={EMBEDDINGS: embedding_columns},
    )
    columns = [*shared, *embedding_columns]
    ref_data = Dataset.from_pandas(ref_frame[columns], data_definition=definition)
    cur_data = Dataset.from_pandas(cur_frame[columns], data_definition=definition)
    report = Report(
        [
            DataDriftPreset(columns=shared, num_method="wasserstein", cat_method="jensenshannon"),
            EmbeddingsDrift(
                embeddings_name=EMBEDDINGS,
                drift_method=MMDDriftMethod(threshold=embedding_threshold),
            ),
        ],
        metadata={"model_version": model_version, "reference_version": reference_version},
    )
    snapshot = report.run(current_data=cur_data, reference_data=ref_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    logger.info("evidently report written to %s", path)
    return path


@dataclass
class ReportLimiter:
    """At most one automatic report per ``min_interval_s`` (clock passed in)."""

    min_interval_s: float
    last: float | None = None

    def allow(self, now: float) -> bool:
        if self.last is not None and now - self.last < self.min_interval_s:
            return False
        self.last = now
        return True
