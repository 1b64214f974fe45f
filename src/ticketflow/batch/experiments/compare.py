"""The candidate comparison (``ticketflow experiments``): every candidate on every task and
target with the protocol of :mod:`.protocol`, one table and the winner by CV.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticketflow.batch.experiments.candidates import Linear, default_candidates
from ticketflow.batch.experiments.outputs import write_plots, write_report
from ticketflow.batch.experiments.protocol import (
    REVIEW_PRECISION,
    SEED,
    TASKS,
    TEST_SIZE,
    Prepared,
    Task,
    machine_info,
    prepare,
)
from ticketflow.batch.experiments.request import ExperimentRequest
from ticketflow.batch.experiments.scoring import (
    HeldOut,
    choose_winner,
    held_out,
    inference_cost,
    score,
)
from ticketflow.data.progress import progress as progress_bar
from ticketflow.models.embedding import Encoder

logger = logging.getLogger(__name__)


def run_experiments(
    datasets: Path,
    encoder: Encoder,
    request: ExperimentRequest | None = None,
    *,
    out_dir: Path | None,
    tasks: Sequence[Task] = TASKS,
    cost_encoder: Encoder | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every candidate on every task and target; write ``results.json`` and ``.md``
    and, with ``request.plots``, per task and target the winner's reliability diagram and
    confusion matrix and every candidate's coverage–precision curve (``out_dir/plots``).

    ``request`` (None: the protocol's defaults) says which candidates, how many folds, the
    rows and targets per task; ``cost_encoder`` (the bare encoder, not a cache) adds the
    winner's inference cost; ``on_row`` sees each result row as soon as it is scored.
    """
    request = request if request is not None else ExperimentRequest()
    chosen = request.candidates
    candidates = list(chosen if chosen is not None else default_candidates())
    folds, max_text_chars, progress = request.folds, request.max_text_chars, request.progress
    rows, targets, min_class_rows = request.rows, request.targets, request.min_class_rows
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    protocol: dict[str, Any] = {}
    prepared: dict[str, Prepared] = {}
    predictions: dict[tuple[str, str], dict[str, HeldOut]] = {}
    for task in tasks:
        data = prepare(
            task,
            datasets,
            encoder,
            max_text_chars=max_text_chars,
            rows=(rows or {}).get(task.name),
            progress=progress,
            min_class_rows=min_class_rows,
        )
        prepared[task.name] = data
        chosen_targets = list((targets or {}).get(task.name, task.targets))
        protocol[task.name] = {
            "file": task.file,
            "rows_in_file": data.n_file,
            "rows_used": len(data.texts),
            "subsample": (
                f"stratified on {task.targets[0]}, seed {SEED}"
                if len(data.texts) < data.n_file
                else "all rows"
            ),
            "train": len(data.train),
            "test": len(data.test),
            "targets": chosen_targets,
        }
        if data.dropped:
            protocol[task.name]["dropped_classes"] = {
                "min_rows": min_class_rows,
                "classes": data.dropped,
            }
        steps = [(t, c) for t in chosen_targets for c in candidates]
        bar = progress_bar(steps, desc=f"{task.name}", disable=not progress)
        for target, candidate in bar:
            bar.set_postfix_str(f"{target}: {candidate.name}"[:60])
            for outcome in candidate.run(data, target, folds):
                row = {"task": task.name, "target": target, **score(outcome, data, target)}
                predictions.setdefault((task.name, target), {})[outcome.candidate] = held_out(
                    outcome, data, target
                )
                results.append(row)
                if on_row is not None:
                    on_row(row)
    winner = choose_winner(results)
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": encoder.name,
        "max_text_chars": max_text_chars,
        "split": f"stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} on the first target, seed {SEED}",
        "cv": f"stratified {folds}-fold on the training part, seed {SEED}",
        "selection": "best mean CV macro-F1 over all targets; ties: lower CV ECE",
        "review_precision": REVIEW_PRECISION,
        "protocol": protocol,
        "results": results,
        "winner": winner,
        "machine": machine_info(),
        "seconds": time.perf_counter() - started,
    }
    winner_config = next(
        (c.config for c in candidates if isinstance(c, Linear) and winner.startswith(c.label)),
        None,
    )
    if winner_config is not None and cost_encoder is not None and tasks:
        first = prepared[tasks[0].name]
        report["inference_cost"] = {
            "model": winner,
            "task": first.task.name,
            **inference_cost(first, cost_encoder, winner_config),
        }
    if out_dir is not None:
        if request.plots:
            report["plots"] = write_plots(predictions, winner, out_dir)
        write_report(report, out_dir)
    return report


__all__ = [
    "run_experiments",
]
