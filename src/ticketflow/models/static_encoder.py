"""A static (model2vec) embedding distilled from the transformer: the cascade's cheap stage.

``model2vec.distill`` runs every vocabulary token through the transformer once and keeps a
PCA-reduced table of token vectors; encoding a ticket is then a lookup and a mean, about two
orders of magnitude faster than the transformer (2,000 tickets/s measured on 2 cores vs
~20). Alone it is a weaker representation, which is why it only decides the tickets the
first-stage classifier is confident about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ticketflow.data.progress import on_terminal
from ticketflow.models.build_cache import atomic_directory
from ticketflow.models.embedding import EncoderLoadError, FloatMatrix, resolve_model_source

if TYPE_CHECKING:
    from model2vec import StaticModel

logger = logging.getLogger(__name__)

STATIC_PREFIX = "model2vec:"
DISTILL_FORMAT = 1
PCA_DIMS = 256
STAMP_FILE = "ticketflow-distill.json"


def static_model_name(source_model: str) -> str:
    """The declared name of the static model distilled from ``source_model``."""
    return f"{STATIC_PREFIX}{source_model}"


def distill_dir_name(source_model: str) -> str:
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in source_model)
    return f"{slug}--model2vec-{PCA_DIMS}--f{DISTILL_FORMAT}"


def _tree_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != STAMP_FILE):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def distill_static(source_model: str, out_dir: Path) -> Path:
    """Distil ``source_model`` into a model2vec directory at ``out_dir`` (atomic rename)."""
    source = resolve_model_source(source_model)
    if source != source_model:
        # The weights are local: never let transformers try the network for extra files.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from model2vec.distill import distill
    except ImportError as exc:  # the distill extra (skeletoken) is a training-time dependency
        raise EncoderLoadError(
            f"cannot distil a static model: {exc}. Install ticketflow's dependencies "
            "(`make install`) or use CASCADE=off"
        ) from exc
    with atomic_directory(out_dir) as work:
        model = distill(model_name=source, pca_dims=PCA_DIMS)
        model.save_pretrained(str(work))
        stamp = {"source_model": source_model, "sha256": _tree_sha256(work)}
        (work / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    logger.info("distilled %s into %s", source_model, out_dir)
    return out_dir


def ensure_static(source_model: str, root: Path, *, cache_root: Path | None = None) -> Path:
    """The distilled static model of ``source_model`` under ``root`` (distilled when missing)."""
    from ticketflow.models.build_cache import materialise

    return materialise(
        root / distill_dir_name(source_model),
        marker=STAMP_FILE,
        build=lambda target: distill_static(source_model, target),
        cache_root=cache_root,
    )


def static_sha256(directory: Path) -> str:
    stamp = directory / STAMP_FILE
    if not stamp.is_file():
        raise EncoderLoadError(f"no distilled static model in {directory}")
    recorded = str(json.loads(stamp.read_text(encoding="utf-8"))["sha256"])
    actual = _tree_sha256(directory)
    if actual != recorded:
        raise EncoderLoadError(
            f"static model {directory} changed since it was distilled "
            f"(sha256 {actual[:12]} != {recorded[:12]}); delete it to distil again"
        )
    return recorded


def load_distilled(directory: Path) -> StaticModel:
    """The model2vec model :func:`distill_static` saved in ``directory``, read as
    ``StaticModel.from_pretrained`` reads that layout (model.safetensors, tokenizer.json,
    config.json).

    Not through ``from_pretrained``: its loader also serves the Hugging Face hub and imports
    the hub client and model-card code to do so, a share of every worker's cold start
    (docs/speed.md) for a directory that is always local. A unit test checks that both give
    the same vectors.
    """
    from model2vec import StaticModel
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / "model.safetensors"))
    return StaticModel(
        vectors=tensors["embeddings"],
        tokenizer=Tokenizer.from_file(str(directory / "tokenizer.json")),
        config=config,
        normalize=bool(config.get("normalize", False)),
        weights=tensors.get("weights"),
        token_mapping=tensors.get("mapping"),
        max_length=config.get("max_length", 512),
    )


class StaticEncoder:
    """model2vec behind the :class:`~ticketflow.models.embedding.Encoder` protocol
    (L2-normalised)."""

    def __init__(self, directory: Path, *, source_model: str) -> None:
        self.sha256 = static_sha256(directory)
        self._model = load_distilled(directory)
        self._name = static_model_name(source_model)
        self._dimension = int(self._model.dim)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        vectors = np.asarray(
            self._model.encode(list(texts), show_progress_bar=show_progress and on_terminal()),
            dtype=np.float32,
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: FloatMatrix = vectors / np.maximum(norms, 1e-12)
        return normalised
