"""``ticketflow report performance``: the model's stored labels scored against the labels
people gave (corrections) or files gave (imports) in the vector store: Evidently's
classification preset per target plus a plain summary page.

Rows the labelling model was fit on (its ``training-rows.npz``: ticket ids and model texts,
:class:`ticketflow.models.registry.TrainingRows`) are left out of the live numbers and shown
apart: backfilling the training file would otherwise score memorised rows as unseen.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ticketflow.batch.reports.page import Link, Page, Section, Table
from ticketflow.models.registry import TrainingRows
from ticketflow.schemas import store as layout

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    """One target's labelled tickets: the known label next to the model's."""

    truth: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    source: list[str] = field(default_factory=list)  # human | imported
    model_version: list[str] = field(default_factory=list)
    # Whether the labelling model was fit on the ticket; None: unknown (the model version
    # recorded no training rows, or no registry was given).
    trained: list[bool | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.truth)


def store_targets(metadatas: Iterable[Mapping[str, Any]]) -> list[str]:
    """Targets some record has a known label of (``human_<t>`` or ``imported_<t>``)."""
    found: set[str] = set()
    for metadata in metadatas:
        for key in metadata:
            for prefix in (layout.HUMAN_PREFIX, layout.IMPORTED_PREFIX):
                if key.startswith(prefix) and key != layout.IMPORT_SOURCE:
                    found.add(key[len(prefix) :])
    return sorted(found)


# A model version's training rows; None when it recorded none (older models, unknown versions).
TrainingLookup = Callable[[str], TrainingRows | None]


def scored_labels(
    metadatas: Iterable[Mapping[str, Any]],
    targets: Sequence[str],
    *,
    since: float | None = None,
    ids: Sequence[str] | None = None,
    documents: Sequence[str | None] | None = None,
    training: TrainingLookup | None = None,
) -> dict[str, Scored]:
    """Per target, the records with both a known label (a person's correction, else an
    imported one: :func:`ticketflow.schemas.store.known_label`) and the model's label
    (:func:`~ticketflow.schemas.store.model_label`). ``since``: only tickets the model
    labelled at or after this epoch second (``processed_at``).

    ``training``: each model version's training rows; a record whose id (``ids``, aligned
    with ``metadatas``) or stored document (``documents``: the model text under
    ``CHROMA_DOCUMENT=full``) is one of its labelling model's is marked ``trained``."""
    result = {t: Scored() for t in targets}
    cache: dict[str, TrainingRows | None] = {}
    for index, metadata in enumerate(metadatas):
        processed = metadata.get("processed_at")
        if since is not None and (processed is None or float(processed) < since):
            continue
        version = str(metadata.get("model_version", "?"))
        trained: bool | None = None
        if training is not None:
            if version not in cache:
                cache[version] = training(version)
            rows = cache[version]
            if rows is not None:
                trained = rows.contains(
                    ids[index] if ids is not None else None,
                    documents[index] if documents is not None else None,
                )
        for target in targets:
            truth = layout.known_label(metadata, target)
            model = layout.model_label(metadata, target)
            if truth is None or model is None:
                continue
            scored = result[target]
            scored.truth.append(truth)
            scored.predicted.append(model[0])
            scored.probability.append(model[1])
            human = layout.human_label(metadata, target) is not None
            source = layout.LabelSource.HUMAN if human else layout.LabelSource.IMPORTED
            scored.source.append(source.value)
            scored.model_version.append(version)
            scored.trained.append(trained)
    return result


def performance_summary(scored: Scored) -> dict[str, Any]:
    """Accuracy and macro-F1 of the tickets the labelling model was not fit on, overall, per
    label source and per model version; the training rows apart (``training_rows``) and the
    count of tickets whose model recorded no training rows (``unchecked``)."""
    from sklearn.metrics import accuracy_score, f1_score

    def numbers(rows: Sequence[int]) -> dict[str, Any]:
        truth = [scored.truth[i] for i in rows]
        predicted = [scored.predicted[i] for i in rows]
        return {
            "n": len(rows),
            "accuracy": float(accuracy_score(truth, predicted)) if rows else math.nan,
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))
            if rows
            else math.nan,
        }

    trained = scored.trained or [None] * len(scored)
    everything = [i for i in range(len(scored)) if trained[i] is not True]
    training_rows = [i for i in range(len(scored)) if trained[i] is True]
    by_source = {
        str(s): numbers([i for i in everything if scored.source[i] == s])
        for s in sorted(set(scored.source))
    }
    by_version = {
        v: numbers([i for i in everything if scored.model_version[i] == v])
        for v in sorted(set(scored.model_version))
    }
    return {
        "all": numbers(everything),
        "by_source": by_source,
        "by_version": by_version,
        "training_rows": numbers(training_rows),
        "unchecked": sum(1 for i in everything if trained[i] is None),
    }


def evidently_report(scored: Scored, target: str, path: Path) -> Path:
    """Evidently's ``ClassificationPreset`` (accuracy, precision, recall, F1, per-class
    quality, confusion matrix) of the model's labels against the known ones, as HTML."""
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset

    # Named after the target, so Evidently's titles say which one ("Target: 'queue'").
    predicted = f"{target} (model)"
    # The live rows only, as in the summary: the model's training rows would flatter it.
    keep = [i for i, seen in enumerate(scored.trained or [None] * len(scored)) if seen is not True]
    frame = pd.DataFrame(
        {
            target: [scored.truth[i] for i in keep],
            predicted: [scored.predicted[i] for i in keep],
        }
    )
    definition = DataDefinition(
        categorical_columns=[target, predicted],
        classification=[MulticlassClassification(target=target, prediction_labels=predicted)],
    )
    dataset = Dataset.from_pandas(frame, data_definition=definition)
    snapshot = Report([ClassificationPreset()], metadata={"target": target}).run(
        current_data=dataset
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def build_performance_report(
    scored: Mapping[str, Scored],
    out_dir: Path,
    *,
    source: str,
    since: datetime | None,
    min_labels: int,
    records: int,
) -> Page:
    """The summary page, and one Evidently report per target with at least ``min_labels``
    labelled tickets (``out_dir/evidently-<target>.html``, shown in the page)."""
    window = f"since {since:%Y-%m-%d %H:%M} UTC" if since else "all time"
    summary: dict[str, Any] = {
        "source": source,
        "records": records,
        "since": since.isoformat() if since else None,
        "min_labels": min_labels,
        "targets": {},
    }
    overview = Section("summary", "Summary")
    overview.blocks.append(
        f"{records:,} tickets read from {source} ({window}). Truth is a person's correction "
        "where there is one, else the label an imported file gave; the model's label is the "
        "one it stored before any correction."
    )
    overview.blocks.append(
        "!Corrected tickets are the ones people chose to fix, mostly where the model was "
        "wrong or held for review: accuracy on human labels understates the model. Imported "
        "labels were not chosen by where the model failed, but they overstate it on tickets "
        "it was trained on: those (by ticket id, or by text where the store keeps it) are "
        "left out of every number below except the row 'training rows (left out)'. Compare "
        "the rows per label source."
    )
    table_rows: list[tuple[object, ...]] = []
    sections: list[Section] = [overview]
    too_few: list[str] = []
    excluded: list[tuple[str, int, int]] = []  # target, training rows left out, unchecked
    for target, rows in scored.items():
        numbers = performance_summary(rows)
        summary["targets"][target] = numbers
        for name, part in [("all", numbers["all"]), *sorted(numbers["by_source"].items())]:
            table_rows.append((target, name, part["n"], part["accuracy"], part["macro_f1"]))
        seen = numbers["training_rows"]
        if seen["n"]:
            table_rows.append(
                (
                    target,
                    "training rows (left out)",
                    seen["n"],
                    seen["accuracy"],
                    seen["macro_f1"],
                )
            )
        excluded.append((target, seen["n"], numbers["unchecked"]))
        section = Section(f"target-{_slug(target)}", f"{target}")
        live = numbers["all"]["n"]
        if live < min_labels:
            too_few.append(target)
            section.blocks.append(
                f"!Too few labelled tickets for {target}: {live} (at least {min_labels} "
                "needed, --min-labels). Correct labels with ticketflow feedback or import a "
                "labelled file with ticketflow backfill."
            )
            sections.append(section)
            continue
        versions = numbers["by_version"]
        section.blocks.append(
            Table(
                ("model version", "tickets", "accuracy", "macro-F1"),
                [(v, p["n"], p["accuracy"], p["macro_f1"]) for v, p in versions.items()],
                caption="Per model version",
            )
        )
        name = f"evidently-{_slug(target)}.html"
        evidently_report(rows, target, out_dir / name)
        section.blocks.append(
            Link(
                name,
                f"Evidently classification report of {target} ({live:,} tickets the model "
                "was not trained on)",
                frame=True,
            )
        )
        sections.append(section)
    overview.blocks.append(
        Table(
            ("target", "labels", "tickets", "accuracy", "macro-F1"),
            table_rows,
            caption="Model labels against known labels",
        )
    )
    for target, left_out, unchecked in excluded:
        line = (
            f"{target}: {left_out:,} labelled tickets left out as training rows of the model "
            "that labelled them"
        )
        if unchecked:
            line = (
                f"!{line}; {unchecked:,} could not be checked (their model version recorded "
                "no training rows: trained before ticketflow kept them) and are counted"
            )
        overview.blocks.append(line + ".")
    if not scored:
        overview.blocks.append(
            "!No labelled tickets: no record carries a person's correction or an imported "
            "label. Correct labels with ticketflow feedback or import a labelled file with "
            "ticketflow backfill."
        )
    elif too_few:
        overview.blocks.append(
            f"!Too few labelled tickets for {', '.join(too_few)} (fewer than {min_labels})."
        )
    summary["too_few"] = too_few
    return Page(
        title="Live accuracy",
        subtitle=f"{source} · {window} · created {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        "ticketflow report performance",
        sections=sections,
        summary=summary,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "_"


__all__ = [
    "Scored",
    "TrainingLookup",
    "build_performance_report",
    "evidently_report",
    "performance_summary",
    "scored_labels",
    "store_targets",
]
