"""Predictions -> the drift monitor's columns: one derivation for every producer.

The worker publishes one :class:`~ticketflow.schemas.MonitorRecord` per ticket and the
monitor turns a window of them into a :class:`MonitorSample`; reference sets (``train``,
``ticketflow drift reference``) and the drift benchmark derive the same columns from
predictions here, with the same review rule as the worker (a flag per target, and the
ticket's flag from its review gate), so a reference and a window differ only by the tickets
in them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ticketflow.models.classifier import Prediction
from ticketflow.models.pipeline import LabelingPipeline
from ticketflow.models.review import ReviewCuts, ReviewPolicy
from ticketflow.monitoring.drift import MonitorSample
from ticketflow.schemas import MonitorRecord, Ticket
from ticketflow.schemas.monitoring import unpack_vector


def predictions_sample(
    predictions: Sequence[Mapping[str, Prediction]],
    *,
    targets: Sequence[str],
    vectors: npt.ArrayLike,
    texts: Sequence[str],
    languages: Sequence[str | None],
    cuts: ReviewCuts,
) -> MonitorSample:
    """The monitor's columns of labelled tickets; ``vectors`` are the ones the worker publishes
    (a cascade's static vectors). ``cuts``: the served model's review cuts and gate."""
    flags = [cuts.flags(p) for p in predictions]
    return MonitorSample(
        vectors=np.asarray(vectors, dtype=np.float32),
        labels={t: [p[t].label for p in predictions] for t in targets},
        probabilities={t: [float(p[t].probability) for p in predictions] for t in targets},
        text_lengths=[len(text) for text in texts],
        languages=list(languages),
        needs_review=[cuts.holds(p) for p in predictions],
        needs_review_by_target={t: [f[t] for f in flags] for t in targets},
    )


def pipeline_sample(
    pipeline: LabelingPipeline, tickets: Sequence[Ticket], *, review: ReviewPolicy
) -> MonitorSample:
    """Label ``tickets`` exactly as the worker does and return the monitor's columns.
    ``review``: the worker's policy, whose threshold serves targets without a cut of their
    own."""
    result = pipeline.run(tickets)
    return predictions_sample(
        result.predictions,
        targets=list(pipeline.classifier.targets),
        vectors=result.vectors,
        texts=result.texts,
        languages=[t.language for t in tickets],
        cuts=review.cuts(pipeline.classifier),
    )


def records_sample(records: Sequence[MonitorRecord]) -> MonitorSample:
    """A window of the worker's monitor records as the monitor's columns (vectors decoded
    from float16)."""
    targets = sorted(set.intersection(*(set(r.labels) for r in records))) if records else []
    # Per-target flags only for targets every record has them for (older workers send none).
    reviewed = [t for t in targets if all(t in r.needs_review_by_target for r in records)]
    return MonitorSample(
        vectors=np.stack([unpack_vector(r) for r in records]).astype(np.float32),
        labels={t: [r.labels[t] for r in records] for t in targets},
        probabilities={t: [r.probabilities[t] for r in records] for t in targets},
        text_lengths=[r.text_length for r in records],
        languages=[r.language for r in records],
        needs_review=[r.needs_review for r in records],
        needs_review_by_target={
            t: [r.needs_review_by_target[t] for r in records] for t in reviewed
        },
    )
