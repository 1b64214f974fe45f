"""What one comparison is asked to run, beyond the data and the encoder: the knobs that travel
together from the command (or a notebook) to
:func:`~ticketflow.batch.experiments.compare.run_experiments` and
:func:`~ticketflow.batch.experiments.encoders.compare_encoders`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ticketflow.batch.experiments.candidates import Candidate

logger = logging.getLogger(__name__)

__all__ = ["ExperimentRequest"]


@dataclass(frozen=True)
class ExperimentRequest:
    """How a comparison runs; every field has the protocol's default.

    ``rows`` and ``targets`` are keyed by task name (:attr:`Task.name
    <ticketflow.batch.experiments.protocol.Task.name>`): a task absent from them keeps its own
    subsample and all of its targets. ``plots`` concerns the candidate comparison only (the
    encoder comparison draws none).
    """

    # None: the comparison's own set (default_candidates, encoder_candidates).
    candidates: tuple[Candidate, ...] | None = None
    folds: int = 5  # stratified CV folds on the training part
    max_text_chars: int = 1_000  # MAX_TEXT_CHARS: where the model text is cut
    rows: Mapping[str, int] = field(default_factory=dict)  # stratified subsample per task
    targets: Mapping[str, Sequence[str]] = field(default_factory=dict)  # targets per task
    # Rows whose class (of any target) has fewer rows are left out; None keeps every class.
    min_class_rows: int | None = None
    progress: bool = True  # progress bars while embedding and fitting
    plots: bool = True  # reliability, confusion and coverage–precision PNGs next to the table
