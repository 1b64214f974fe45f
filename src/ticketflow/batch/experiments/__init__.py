"""The experiment harness: candidate models on the real ticket data sets, one table.

* :mod:`.protocol`: the tasks, the rows (subsampled, embedded once) and the fixed split;
  the protocol itself is written down there and in docs/model-quality.md.
* :mod:`.candidates`: the compared model families and the lists each comparison runs.
* :mod:`.scoring`: CV and test numbers of one candidate, the winner by CV, the inference cost.
* :mod:`.request`: :class:`ExperimentRequest`, what a comparison is asked to run.
* :mod:`.compare`: the candidate comparison, :func:`run_experiments` (``ticketflow
  experiments``).
* :mod:`.encoders`: the encoder comparison, :func:`compare_encoders` (``ticketflow
  experiments --data F --encoder E``).
* :mod:`.outputs`: the markdown, JSON and plots they write.

The names below are re-exported so that callers (the CLI, bench/, the notebooks) keep writing
``experiments.run_experiments``; each has one home in a submodule.
"""

from __future__ import annotations

import logging

from ticketflow.batch.experiments.candidates import (
    DEFAULT_MODEL,
    Candidate,
    Linear,
    Majority,
    NearestNeighbours,
    Outcome,
    default_candidates,
    encoder_candidates,
    file_candidates,
    quick_candidates,
    selection_note,
)
from ticketflow.batch.experiments.compare import run_experiments
from ticketflow.batch.experiments.encoders import (
    DEFAULT_ENCODER_REQUEST,
    ENCODER_BACKENDS,
    EncoderChoice,
    Model2VecEncoder,
    compare_encoders,
    encoder_choices,
    local_encoder,
)
from ticketflow.batch.experiments.outputs import (
    encoders_markdown,
    markdown,
    write_plots,
    write_report,
)
from ticketflow.batch.experiments.protocol import (
    MIN_CLASS_ROWS,
    REVIEW_PRECISION,
    SEED,
    TASKS,
    TEST_SIZE,
    Prepared,
    Task,
    default_datasets_dir,
    embedded,
    file_task,
    load_task,
    prepare,
    subsample_indices,
)
from ticketflow.batch.experiments.request import ExperimentRequest
from ticketflow.batch.experiments.scoring import (
    HeldOut,
    choose_winner,
    held_out,
    inference_cost,
    score,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ENCODER_REQUEST",
    "DEFAULT_MODEL",
    "ENCODER_BACKENDS",
    "MIN_CLASS_ROWS",
    "REVIEW_PRECISION",
    "SEED",
    "TASKS",
    "TEST_SIZE",
    "Candidate",
    "EncoderChoice",
    "ExperimentRequest",
    "HeldOut",
    "Linear",
    "Majority",
    "Model2VecEncoder",
    "NearestNeighbours",
    "Outcome",
    "Prepared",
    "Task",
    "choose_winner",
    "compare_encoders",
    "default_candidates",
    "default_datasets_dir",
    "embedded",
    "encoder_candidates",
    "encoder_choices",
    "encoders_markdown",
    "file_candidates",
    "file_task",
    "held_out",
    "inference_cost",
    "load_task",
    "local_encoder",
    "markdown",
    "prepare",
    "quick_candidates",
    "run_experiments",
    "score",
    "selection_note",
    "subsample_indices",
    "write_plots",
    "write_report",
]
